//! The only module with `unsafe`: thin wrappers over the system calls that
//! `nix` does not cover safely. One function per call, each block with a
//! `// SAFETY:` line. Everything else in the crate is `#![forbid(unsafe_code)]`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// Empties the process environment so no later libc code (NSS, iconv, time
/// zones) reads a caller-chosen variable while we are privileged.
pub fn clear_environment() -> io::Result<()> {
    // SAFETY: called once at the very start of main, before any thread exists
    // and while no reference into the environment block is held.
    let ret = unsafe { libc::clearenv() };
    check(ret.into()).map(drop)
}

/// Whether `fd` is open (`fcntl(F_GETFD)` succeeds).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; an unopened number gives EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Opens `/dev/null` onto each of 0, 1, 2 that is closed, so nothing we open
/// later can land on a standard stream.
pub fn reopen_missing_stdio() -> io::Result<()> {
    for fd in 0..=2 {
        if fd_is_open(fd) {
            continue;
        }
        // SAFETY: the path is a valid NUL-terminated string; the lowest free
        // descriptor is `fd` itself because all lower ones are open.
        let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if opened < 0 {
            return Err(io::Error::last_os_error());
        }
        if opened != fd {
            // SAFETY: `opened` was just returned by open(2) and is owned by nobody else.
            drop(unsafe { OwnedFd::from_raw_fd(opened) });
            return Err(io::Error::other("could not reopen a closed standard stream"));
        }
    }
    Ok(())
}

/// `prctl(PR_CAPBSET_DROP)` for every capability the kernel knows, in
/// order from 0 until the kernel answers `EINVAL` (past its last one,
/// `/proc/sys/kernel/cap_last_cap`). Returns how many were dropped.
///
/// This is also the verification that the bounding set is empty: the kernel
/// returns 0 only after committing credentials without that capability
/// (`cap_prctl_drop` in security/commoncap.c; `commit_creds` cannot fail), so
/// every capability from 0 to the first `EINVAL` is gone, which is all of
/// them. Reading each one back with `PR_CAPBSET_READ` would ask the kernel
/// the same question again, 41 more system calls per entry.
pub fn drop_bounding_set() -> io::Result<u32> {
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes an integer capability number, no pointers.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            // EINVAL: past the last capability this kernel knows.
            if err.raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                return Ok(cap);
            }
            return Err(err);
        }
    }
    Err(io::Error::other("the kernel knows more than 64 capabilities"))
}

/// The supplementary groups, from `getgroups(2)`: once into room for 32
/// (most users' count), else asked twice (the count, then the list).
/// glibc's `sysconf(_SC_NGROUPS_MAX)`, which nix sizes its buffer by, reads
/// `/proc/sys/kernel/ngroups_max` each time.
pub fn supplementary_groups() -> io::Result<Vec<libc::gid_t>> {
    let mut first = [0 as libc::gid_t; 32];
    // SAFETY: `first` has room for the 32 gids the size says; the kernel
    // writes at most that many, or fails with EINVAL when there are more.
    let got = unsafe { libc::getgroups(first.len() as libc::c_int, first.as_mut_ptr()) };
    match check(got.into()) {
        Ok(got) => return Ok(first[..got as usize].to_vec()),
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {}
        Err(err) => return Err(err),
    }
    loop {
        // SAFETY: a zero size asks only for the count; the pointer is not used.
        let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        check(count.into())?;
        let mut groups: Vec<libc::gid_t> = vec![0; count as usize];
        // SAFETY: `groups` has room for `count` gids, the size passed.
        let got = unsafe { libc::getgroups(count, groups.as_mut_ptr()) };
        match check(got.into()) {
            Ok(got) => {
                groups.truncate(got as usize);
                return Ok(groups);
            }
            // The list grew in between (another thread cannot change ours,
            // but be exact): ask again.
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => continue,
            Err(err) => return Err(err),
        }
    }
}

/// An unbound, non-blocking, close-on-exec Unix datagram socket, made in
/// one `socket(2)` call (std's `UnixDatagram::unbound` and
/// `set_nonblocking` take two).
pub fn nonblocking_datagram_socket() -> io::Result<std::os::unix::net::UnixDatagram> {
    // SAFETY: integer arguments only.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    check(fd.into())?;
    // SAFETY: socket(2) returned a new descriptor that nothing else owns.
    Ok(unsafe { std::os::unix::net::UnixDatagram::from_raw_fd(fd) })
}

/// Whether `path` (a link itself, not followed) carries a POSIX access ACL
/// (the `system.posix_acl_access` attribute, acl(5)), whose entries may deny
/// a named user or group what the mode bits allow others. Any answer but
/// "no such attribute" or "not supported here" counts as one.
pub fn has_access_acl(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return true };
    // SAFETY: both names are NUL-terminated strings; a zero size with a null
    // buffer asks only for the value's length, and nothing is written.
    let ret = unsafe { libc::lgetxattr(path.as_ptr(), c"system.posix_acl_access".as_ptr(), std::ptr::null_mut(), 0) };
    ret >= 0 || !matches!(io::Error::last_os_error().raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP))
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`.
pub fn clear_ambient_caps() -> io::Result<()> {
    // SAFETY: integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    match check(ret.into()) {
        // Kernels before 4.3 have no ambient set: nothing to clear.
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other.map(drop),
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// The (effective, permitted, inheritable) sets as 64-bit masks.
pub fn capability_sets() -> io::Result<(u64, u64, u64)> {
    let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array of the v3 layout, as capget(2) requires.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    check(ret)?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

/// Empties the effective, permitted and inheritable capability sets.
pub fn clear_capability_sets() -> io::Result<()> {
    let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array of the v3 layout, as capset(2) requires.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    check(ret).map(drop)
}

/// `personality(2)` with exactly `persona`, returning the previous value.
pub fn set_personality(persona: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: integer argument only.
    let ret = unsafe { libc::personality(persona) };
    check(ret.into()).map(|_| ret)
}

/// Reads the current personality without changing it.
pub fn current_personality() -> io::Result<libc::c_int> {
    // SAFETY: 0xffffffff is the documented query value; nothing is changed.
    let ret = unsafe { libc::personality(0xffff_ffff) };
    check(ret.into()).map(|_| ret)
}

/// `open_tree(2)`: a detached copy of the mount tree at `path` (resolved
/// relative to `dirfd`), recursive when `recursive`.
pub fn open_tree_clone(dirfd: impl AsFd, path: &CStr, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    // SAFETY: valid fd and NUL-terminated path; flags are from the uapi header.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, dirfd.as_fd().as_raw_fd(), path.as_ptr(), flags) };
    let fd = check(ret)?;
    // SAFETY: open_tree returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `mount_setattr(2)` on a detached mount: sets `attr_set`, recursively when asked.
pub fn mount_setattr(mount: impl AsFd, attr_set: u64, recursive: bool) -> io::Result<()> {
    setattr(mount, libc::mount_attr { attr_set, attr_clr: 0, propagation: 0, userns_fd: 0 }, recursive)
}

/// `mount_setattr(2)` setting the propagation type of `mount` (and its
/// submounts when `recursive`): `MS_SLAVE` (receives its peers' mount
/// events, sends none) or `MS_PRIVATE` (neither).
pub fn mount_set_propagation(mount: impl AsFd, propagation: libc::c_ulong, recursive: bool) -> io::Result<()> {
    setattr(mount, libc::mount_attr { attr_set: 0, attr_clr: 0, propagation, userns_fd: 0 }, recursive)
}

fn setattr(mount: impl AsFd, attr: libc::mount_attr, recursive: bool) -> io::Result<()> {
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: valid fd, empty path with AT_EMPTY_PATH, and a properly sized mount_attr.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_fd().as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    check(ret).map(drop)
}

/// `move_mount(2)`: attaches the detached `mount` on top of `target`, both by fd.
pub fn move_mount_onto(mount: impl AsFd, target: impl AsFd) -> io::Result<()> {
    let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: valid fds, empty paths with the EMPTY_PATH flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_fd().as_raw_fd(),
            c"".as_ptr(),
            target.as_fd().as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    };
    check(ret).map(drop)
}

/// The path this process was executed by (`getauxval(AT_EXECFN)`): what the
/// caller passed to execve, recorded by the kernel.
pub fn exec_filename() -> Option<std::ffi::OsString> {
    // SAFETY: getauxval only reads the auxiliary vector.
    let ptr = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
    if ptr.is_null() {
        return None;
    }
    // SAFETY: AT_EXECFN points at a NUL-terminated string the kernel placed on
    // the initial stack, valid and unmodified for the life of the process.
    let name = unsafe { CStr::from_ptr(ptr) };
    Some(std::os::unix::ffi::OsStringExt::from_vec(name.to_bytes().to_vec()))
}

/// The environment strings the kernel placed for this process at exec, as
/// `/proc/self/environ` would read them (`mm->env_start..env_end`, NUL after
/// each), before the dynamic loader removed anything from `environ` (in a
/// set-uid process it drops `LD_*`, `TMPDIR` and others): read in memory,
/// with no system call. `args` are the arguments as the process got them.
///
/// The kernel lays out the top of the initial stack as the argument strings,
/// then the environment strings, then the executed file name that
/// `AT_EXECFN` points at (fs/exec.c copies them in the reverse order,
/// downwards; fs/binfmt_elf.c `create_elf_tables` records the bounds). So the
/// block starts after the last argument string, found from `argv[0]`
/// (glibc's `program_invocation_name`) and the arguments' lengths, each
/// compared with the string in memory, and ends at `AT_EXECFN`. `None` when
/// anything does not fit that layout: the caller then reads procfs.
pub fn exec_environment_block(args: &[std::ffi::OsString]) -> Option<&'static [u8]> {
    use std::os::unix::ffi::OsStrExt;
    unsafe extern "C" {
        static program_invocation_name: *const libc::c_char;
    }
    // SAFETY: glibc sets this pointer once at start-up, before main, to
    // argv[0] as the kernel passed it; nothing writes it afterwards.
    let first = unsafe { program_invocation_name } as usize;
    // SAFETY: getauxval only reads the auxiliary vector.
    let end = unsafe { libc::getauxval(libc::AT_EXECFN) } as usize;
    if first == 0 || end == 0 || end <= first || end - first > MAX_EXEC_STRINGS {
        return None;
    }
    // SAFETY: [first, end) is the top of the initial stack, from argv[0]'s
    // string up to the executed file name's: mapped, readable and never freed
    // for the life of the process (the kernel's layout, above); checked to be
    // a sane range just before. Only read.
    let strings = unsafe { std::slice::from_raw_parts(first as *const u8, end - first) };
    let mut at = 0;
    for arg in args {
        let arg = arg.as_bytes();
        let here = strings.get(at..at + arg.len() + 1)?;
        if here[..arg.len()] != *arg || here[arg.len()] != 0 {
            return None;
        }
        at += arg.len() + 1;
    }
    let block = &strings[at..];
    (block.is_empty() || block.last() == Some(&0)).then_some(block)
}

/// Most bytes of argument and environment strings the kernel passes to a
/// program: `MAX_ARG_STRLEN` bounds each string, and the total is at most a
/// quarter of the stack limit, capped at 6 MiB (fs/exec.c `get_arg_page`).
const MAX_EXEC_STRINGS: usize = 6 << 20;

/// The GNU build ID of this program (the `NT_GNU_BUILD_ID` note the linker
/// writes, `ld --build-id`), read from its program headers in memory; `None`
/// when it has none.
pub fn build_id() -> Option<Vec<u8>> {
    let mut found: Option<Vec<u8>> = None;
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the program itself
        // first, and `data` is the `found` of build_id, alive during the call.
        let (info, found) = unsafe { (&*info, &mut *(data as *mut Option<Vec<u8>>)) };
        for i in 0..usize::from(info.dlpi_phnum) {
            // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            if ph.p_type != libc::PT_NOTE {
                continue;
            }
            let start = (info.dlpi_addr + ph.p_vaddr) as *const u8;
            // SAFETY: a PT_NOTE segment lies inside a loaded segment of the
            // program, mapped and readable at its load address.
            let notes = unsafe { std::slice::from_raw_parts(start, ph.p_memsz as usize) };
            if let Some(id) = gnu_build_id(notes) {
                *found = Some(id.to_vec());
            }
        }
        1 // the program itself only
    }
    // SAFETY: the callback keeps to dl_iterate_phdr's contract and `found`
    // outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(first_object), &mut found as *mut Option<Vec<u8>> as *mut libc::c_void) };
    found
}

/// The descriptor of the `NT_GNU_BUILD_ID` note among `notes` (ELF note
/// entries: namesz, descsz, type, then name and descriptor, each padded to
/// 4 bytes).
fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8], i: usize| b.get(i..i + 4).map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as usize);
    let padded = |n: usize| n.checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let desc_at = 12 + padded(namesz)?;
        let next = desc_at.checked_add(padded(descsz)?)?;
        let name = notes.get(12..12 + namesz)?;
        let desc = notes.get(desc_at..desc_at + descsz)?;
        if kind as u32 == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(next..)?;
    }
    None
}

/// Whether `signal` is pending for this thread or process (it is blocked).
pub fn signal_pending(signal: libc::c_int) -> bool {
    // SAFETY: sigset_t is plain data that sigemptyset initialises before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    let ret = unsafe { libc::sigpending(&mut set) };
    // SAFETY: `set` was filled in by sigpending.
    ret == 0 && unsafe { libc::sigismember(&set, signal) } == 1
}

/// Takes a pending (blocked) `signal` off the queue without acting on it;
/// does nothing when none is pending.
pub fn discard_pending_signal(signal: libc::c_int) {
    // SAFETY: sigset_t is plain data that sigemptyset initialises before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `set` is a valid sigset_t; a zero timeout makes sigtimedwait
    // return at once; the siginfo pointer may be null.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
    }
}

/// Whether the kernel started this process in secure-execution mode
/// (`getauxval(AT_SECURE)`: a set-uid exec that changed the identity).
pub fn secure_exec() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// `prlimit(pid, resource)` read-only: the (soft, hard) limit of process
/// `pid`, subject to the kernel's permission check for the current identity.
pub fn process_rlimit(pid: libc::pid_t, resource: libc::__rlimit_resource_t) -> io::Result<(u64, u64)> {
    let mut old = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a null new-limit pointer only reads; `old` is a valid rlimit64.
    let ret = unsafe { libc::prlimit64(pid, resource, std::ptr::null(), &mut old) };
    check(ret.into()).map(|_| (old.rlim_cur, old.rlim_max))
}

/// One passwd entry as the host's NSS gives it, bytes untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: Vec<u8>,
    pub passwd: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub gecos: Vec<u8>,
    pub dir: Vec<u8>,
    pub shell: Vec<u8>,
}

/// One group entry's name and id as the host's NSS gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: Vec<u8>,
    pub gid: u32,
}

/// Largest buffer offered to the `get*_r` calls before giving up.
const MAX_NSS_BUFFER: usize = 1 << 20;

/// A `get*_r(3)` call: fills the entry, with its strings in the buffer (of
/// the given length), and sets the result pointer to the entry, or to NULL
/// when there is none. Returns 0 or an error number.
type NssCall<'a, T> = dyn FnMut(*mut T, *mut libc::c_char, usize, *mut *mut T) -> libc::c_int + 'a;

/// Runs `call` on an all-zero `T` with a growing buffer and, when it found
/// an entry, returns what `read` takes from it while the buffer its strings
/// point into is alive: `Ok(None)` when there is none.
///
/// # Safety
/// All-zero must be a valid `T` (a C struct of integers and pointers), and
/// `call` a `get*_r(3)` call for `T` that keeps to its contract ([`NssCall`]).
unsafe fn nss_entry<T, E>(call: &mut NssCall<'_, T>, read: impl Fn(&T) -> E) -> io::Result<Option<E>> {
    // SAFETY: all-zero is a valid `T`, as the caller promises.
    let mut entry: T = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0u8; 4096];
    loop {
        let mut result: *mut T = std::ptr::null_mut();
        match call(&mut entry, buffer.as_mut_ptr().cast(), buffer.len(), &mut result) {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some(read(&entry))),
            libc::ERANGE if buffer.len() < MAX_NSS_BUFFER => buffer.resize(buffer.len() * 4, 0),
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Copies a NUL-terminated string out of an NSS result (empty for NULL).
///
/// # Safety
/// `ptr` is NULL or points at a NUL-terminated string that outlives the call.
unsafe fn nss_bytes(ptr: *const libc::c_char) -> Vec<u8> {
    if ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller promises.
    unsafe { CStr::from_ptr(ptr) }.to_bytes().to_vec()
}

/// `getpwuid_r(3)` through the host's NSS.
pub fn passwd_by_uid(uid: u32) -> io::Result<Option<PasswdEntry>> {
    // SAFETY: every pointer refers to live storage of the stated size.
    let mut call = |pw, buf, len, result| unsafe { libc::getpwuid_r(uid, pw, buf, len, result) };
    // SAFETY: the strings point into the buffer, alive and unchanged while `read` runs.
    let read = |pw: &libc::passwd| unsafe {
        PasswdEntry {
            name: nss_bytes(pw.pw_name),
            passwd: nss_bytes(pw.pw_passwd),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            gecos: nss_bytes(pw.pw_gecos),
            dir: nss_bytes(pw.pw_dir),
            shell: nss_bytes(pw.pw_shell),
        }
    };
    // SAFETY: all-zero is a valid `struct passwd` (integers and NULL
    // pointers), and `call` is getpwuid_r.
    unsafe { nss_entry(&mut call, read) }
}

/// `getgrgid_r(3)` through the host's NSS.
pub fn group_by_gid(gid: u32) -> io::Result<Option<GroupEntry>> {
    // SAFETY: every pointer refers to live storage of the stated size.
    let mut call = |gr, buf, len, result| unsafe { libc::getgrgid_r(gid, gr, buf, len, result) };
    // SAFETY: the name points into the buffer, alive and unchanged while `read` runs.
    let read = |gr: &libc::group| GroupEntry { name: unsafe { nss_bytes(gr.gr_name) }, gid: gr.gr_gid };
    // SAFETY: all-zero is a valid `struct group` (integers and NULL
    // pointers), and `call` is getgrgid_r.
    unsafe { nss_entry(&mut call, read) }
}

/// The whole of a file the kernel makes up as it is read (procfs): such
/// files report no size, so a plain read grows its buffer from 32 bytes, one
/// system call per doubling. One read of `capacity` bytes, then until the end.
pub fn read_generated(path: &str, capacity: usize) -> io::Result<Vec<u8>> {
    read_all(&std::fs::File::open(path)?, capacity, usize::MAX)
}

/// Reads `file` to its end, or to just past `max` bytes (the caller tells a
/// file larger than `max` by the length), into a buffer of `capacity` bytes
/// to start with (grown when full). Unlike `File`'s own `read_to_end`, asks
/// the kernel for no size (`statx`) or position (`lseek`) first: procfs
/// files have no size, and the configuration's was seen by the trusted walk.
pub fn read_all(file: &std::fs::File, capacity: usize, max: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    // Through `Take`: `File`'s own read_to_end asks for the size and the
    // position first. The buffer is not zeroed: pages it never uses are
    // never touched.
    let mut out = Vec::with_capacity(capacity.min(max.saturating_add(1)));
    file.take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1)).read_to_end(&mut out)?;
    Ok(out)
}

/// A namespace of this process, asked of the kernel with no path.
#[derive(Debug, Clone, Copy)]
pub enum OwnNamespace {
    User,
    Mount,
}

/// The inode number of this process's namespace `which`: the kernel's
/// answer through a pidfd ([`own_namespace`]); on a kernel without one, the
/// link /proc/self/ns/user or /proc/self/ns/mnt, `NAME:[INODE]` (proc(5)),
/// read without a stat (which would set up an nsfs inode). Errors: the
/// pidfd call fails otherwise (no fallback then: `EMFILE`, say), or the link
/// cannot be read or is not of that shape.
pub fn namespace_inode(which: OwnNamespace) -> io::Result<u64> {
    if let Some(ns) = own_namespace_by_pidfd(which) {
        return Ok(nix::sys::stat::fstat(&ns?)?.st_ino);
    }
    let link = std::fs::read_link(format!("/proc/self/ns/{}", which.proc_name()))?;
    let inode = link.to_str().and_then(|l| l.strip_prefix(which.proc_name())?.strip_prefix(":[")?.strip_suffix(']'));
    inode.and_then(|i| i.parse().ok()).ok_or_else(|| io::Error::other(format!("{}: not NAME:[INODE]", link.display())))
}

/// An nsfs descriptor of this process's namespace `which`, for `setns(2)`
/// back into it: through a pidfd ([`own_namespace_by_pidfd`]); on a kernel
/// without one, /proc/self/ns/NAME opened. `None` when neither works.
pub fn own_namespace(which: OwnNamespace) -> Option<OwnedFd> {
    match own_namespace_by_pidfd(which) {
        Some(ns) => ns.ok(),
        None => std::fs::File::open(format!("/proc/self/ns/{}", which.proc_name())).ok().map(OwnedFd::from),
    }
}

impl OwnNamespace {
    fn proc_name(self) -> &'static str {
        match self {
            OwnNamespace::User => "user",
            OwnNamespace::Mount => "mnt",
        }
    }
}

/// This process's own pidfd (`pidfd_open(2)`, always close-on-exec),
/// opened once and kept: the self-check and the pin's key both ask it. It is
/// kept with the pid it was opened for, so a forked child (the pin's
/// builder) opens its own rather than asking about its parent. `None` when
/// the kernel has no pidfd_open (before Linux 5.3).
fn own_pidfd() -> Option<io::Result<RawFd>> {
    use std::sync::Mutex;
    static OWN: Mutex<Option<(libc::pid_t, OwnedFd)>> = Mutex::new(None);
    let mut own = OWN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // SAFETY: getpid takes no arguments and cannot fail.
    let pid = unsafe { libc::getpid() };
    if let Some((_, fd)) = own.as_ref().filter(|(opened_for, _)| *opened_for == pid) {
        return Some(Ok(fd.as_raw_fd()));
    }
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        let err = io::Error::last_os_error();
        return (err.raw_os_error() != Some(libc::ENOSYS)).then_some(Err(err));
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    let raw = pidfd.as_raw_fd();
    *own = Some((pid, pidfd));
    Some(Ok(raw))
}

/// This process's user or mount namespace, asked of the kernel with no
/// path: `ioctl(PIDFD_GET_USER_NAMESPACE)` or `ioctl(PIDFD_GET_MNT_NAMESPACE)`
/// (Linux 6.11) on [`own_pidfd`] for the namespace's nsfs descriptor,
/// checked to be on nsfs (`fstatfs`). A path such as /proc/self/ns/user can
/// be mounted over in a mount namespace a user makes with a user namespace
/// of their own; this answer cannot. `None` when the kernel has no such
/// ioctl (or pidfd): callers then use procfs.
fn own_namespace_by_pidfd(which: OwnNamespace) -> Option<io::Result<OwnedFd>> {
    // _IO(PIDFS_IOCTL_MAGIC 0xFF, 9 and 3), include/uapi/linux/pidfd.h.
    let request: libc::c_ulong = match which {
        OwnNamespace::User => 0xFF09,
        OwnNamespace::Mount => 0xFF03,
    };
    let pidfd = match own_pidfd()? {
        Ok(fd) => fd,
        Err(err) => return Some(Err(err)),
    };
    // SAFETY: a pidfd this process keeps open, and an ioctl that takes no argument.
    let ns = unsafe { libc::ioctl(pidfd, request as _, 0) };
    if ns < 0 {
        let err = io::Error::last_os_error();
        // Before Linux 6.11 the ioctl is unknown.
        return (!matches!(err.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL))).then_some(Err(err));
    }
    // SAFETY: the ioctl returned a new descriptor that nothing else owns.
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    let on_nsfs = nix::sys::statfs::fstatfs(&ns)
        .map(|fs| fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .map_err(io::Error::from);
    Some(on_nsfs.and_then(|on_nsfs| {
        if on_nsfs { Ok(ns) } else { Err(io::Error::other("the namespace descriptor is not on nsfs")) }
    }))
}

/// The id of the mount namespace `ns` (an nsfs descriptor), from
/// `ioctl(NS_GET_MNTNS_ID)` (Linux 6.8 and later); `None` before that.
/// The kernel refuses to bind a namespace's file into a namespace whose id
/// is not smaller (`mnt_ns_loop`, "could cause a loop").
pub fn mount_namespace_id(ns: impl AsFd) -> Option<u64> {
    // _IOR(0xb7, 0x5, __u64), include/uapi/linux/nsfs.h.
    const NS_GET_MNTNS_ID: libc::c_ulong = 0x8008_b705;
    let mut id: u64 = 0;
    // SAFETY: a valid descriptor, and a pointer to a u64 the ioctl fills.
    let ret = unsafe { libc::ioctl(ns.as_fd().as_raw_fd(), NS_GET_MNTNS_ID as _, &mut id as *mut u64) };
    (ret == 0).then_some(id)
}

/// `fork(2)`: the child's pid in the parent, `None` in the child.
pub fn fork() -> io::Result<Option<libc::pid_t>> {
    // SAFETY: the setuid binary never starts a thread, so the child is a copy
    // of a single-threaded process and may run any code, allocation included.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child.as_raw())),
        nix::unistd::ForkResult::Child => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list is the kernel's whether it fits the first buffer or not: in
    /// a forked child (as root) with 5 and then 40 groups.
    #[test]
    fn supplementary_groups_are_the_kernels_however_many() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to set groups");
            return;
        }
        let Some(child) = fork().expect("fork") else {
            let ok = [5u32, 40].iter().all(|&n| {
                let want: Vec<libc::gid_t> = (70_000..70_000 + n).collect();
                let set: Vec<nix::unistd::Gid> = want.iter().map(|&g| nix::unistd::Gid::from_raw(g)).collect();
                nix::unistd::setgroups(&set).is_ok() && supplementary_groups().ok() == Some(want)
            });
            std::process::exit(if ok { 0 } else { 1 });
        };
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None).expect("waitpid");
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(child), 0));
    }

    #[test]
    fn the_exec_environment_in_memory_is_what_procfs_reads() {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let procfs = std::fs::read("/proc/self/environ").expect("/proc/self/environ");
        assert_eq!(exec_environment_block(&args), Some(procfs.as_slice()));
        // Arguments that are not this process's: not found, procfs is read.
        assert_eq!(exec_environment_block(&["another-program".into()]), None);
    }

    #[test]
    fn the_build_id_is_read_from_the_notes() {
        let mut note = Vec::new();
        for (name, kind, desc) in
            [(&b"stapsdt\0"[..], 3u32, &[9u8; 5][..]), (b"GNU\0", 1, &[7; 16]), (b"GNU\0", 3, &[1, 2, 3, 4, 5])]
        {
            note.extend((name.len() as u32).to_ne_bytes());
            note.extend((desc.len() as u32).to_ne_bytes());
            note.extend(kind.to_ne_bytes());
            note.extend(name);
            note.resize(note.len().next_multiple_of(4), 0);
            note.extend(desc);
            note.resize(note.len().next_multiple_of(4), 0);
        }
        assert_eq!(gnu_build_id(&note), Some(&[1u8, 2, 3, 4, 5][..]));
        assert_eq!(gnu_build_id(&note[..note.len() - 8]), None);
        // The test binary is linked like imageswitch: with a build ID (SHA-1, 20 bytes).
        assert_eq!(build_id().map(|id| id.len()), Some(20));
    }

    #[test]
    fn nss_lookups_find_root_and_nobody_for_an_unused_id() {
        let root = passwd_by_uid(0).expect("getpwuid_r").expect("root has an entry");
        assert_eq!(
            (root.name.as_slice(), root.uid, root.gid, root.dir.as_slice()),
            (&b"root"[..], 0, 0, &b"/root"[..])
        );
        let group = group_by_gid(0).expect("getgrgid_r").expect("group 0 has an entry");
        assert_eq!(group, GroupEntry { name: b"root".to_vec(), gid: 0 });
        assert_eq!(passwd_by_uid(3_999_999_999).expect("getpwuid_r"), None);
        assert_eq!(group_by_gid(3_999_999_999).expect("getgrgid_r"), None);
    }
}
