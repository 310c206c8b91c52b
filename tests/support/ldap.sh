#!/usr/bin/env bash
# A real directory service for the login tests: slapd listening only on a Unix
# socket under DIR, nslcd (libnss-ldapd) reading from it, and "ldap" added to
# the host's passwd and group lines in nsswitch.conf. The accounts below exist
# ONLY in LDAP.
#   ldap.sh start DIR      (stops first whatever an earlier run left)
#   ldap.sh stop DIR       restores nsswitch.conf and nslcd.conf, stops both
#   ldap.sh pause DIR | resume DIR   SIGSTOP/SIGCONT slapd: lookups time out
set -euo pipefail
action=$1 dir=$2
socket=$dir/ldapi
uri="ldapi://$(printf %s "$socket" | sed 's|/|%2F|g')"
base="dc=imgsw,dc=test"

# Only our own daemons, by the pid files they wrote, checked by name.
stop_pid() { # pidfile name
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ]; then
        kill -CONT "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do [ -e /proc/"$pid" ] || break; sleep 0.1; done
    fi
    rm -f "$1"
}

stop() {
    stop_pid /run/nslcd/nslcd.pid nslcd
    stop_pid "$dir/slapd.pid" slapd
    for f in nsswitch.conf nslcd.conf; do
        if [ -e "$dir/$f.orig" ]; then
            cat "$dir/$f.orig" >/etc/$f
            rm -f "$dir/$f.orig"
        fi
    done
}

case $action in
stop)
    stop
    exit 0
    ;;
pause)
    kill -STOP "$(cat "$dir/slapd.pid")"
    exit 0
    ;;
resume)
    kill -CONT "$(cat "$dir/slapd.pid")"
    exit 0
    ;;
start) ;;
*)
    echo "usage: ldap.sh start|stop|pause|resume DIR" >&2
    exit 2
    ;;
esac

stop
trap 'stop' ERR
rm -rf "$dir/db"
mkdir -p "$dir/db"
chmod 755 "$dir"
cat >"$dir/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
pidfile $dir/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix "$base"
rootdn "cn=admin,$base"
directory $dir/db
EOF
# imgsw-ldapuser (7001) is in imgsw-ldapprimary (7001) and imgsw-ldapgrp
# (7002); imgsw-alice, a local user, is also in imgsw-ldapgrp.
cat >"$dir/data.ldif" <<EOF
dn: $base
objectClass: dcObject
objectClass: organization
o: imgsw
dc: imgsw

dn: ou=people,$base
objectClass: organizationalUnit
ou: people

dn: ou=groups,$base
objectClass: organizationalUnit
ou: groups

dn: uid=imgsw-ldapuser,ou=people,$base
objectClass: account
objectClass: posixAccount
uid: imgsw-ldapuser
cn: imgsw-ldapuser
uidNumber: 7001
gidNumber: 7001
homeDirectory: /home/imgsw-ldapuser
loginShell: /bin/bash
gecos: Only In LDAP

dn: cn=imgsw-ldapprimary,ou=groups,$base
objectClass: posixGroup
cn: imgsw-ldapprimary
gidNumber: 7001

dn: cn=imgsw-ldapgrp,ou=groups,$base
objectClass: posixGroup
cn: imgsw-ldapgrp
gidNumber: 7002
memberUid: imgsw-ldapuser
memberUid: imgsw-alice
EOF
slapadd -q -f "$dir/slapd.conf" -l "$dir/data.ldif"
slapd -f "$dir/slapd.conf" -h "$uri"
for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done

for f in nsswitch.conf nslcd.conf; do cp /etc/$f "$dir/$f.orig"; done
cat >/etc/nslcd.conf <<EOF
uid nslcd
gid nslcd
uri $uri
base $base
bind_timelimit 1
timelimit 1
reconnect_sleeptime 1
reconnect_retrytime 1
reconnect_invalidate passwd,group
EOF
sed -i -E 's/^(passwd|group):(.*)$/\1:\2 ldap/' /etc/nsswitch.conf
install -d -o nslcd -g nslcd /run/nslcd
nslcd
for _ in $(seq 50); do getent passwd imgsw-ldapuser >/dev/null && break; sleep 0.1; done
getent passwd imgsw-ldapuser >/dev/null || { echo "ldap.sh: nslcd does not answer" >&2; exit 1; }
