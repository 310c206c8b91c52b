# Markdown man page source (doc/NAME.SECTION.md) to roff, for systems without
# pandoc. Handles what our man pages use: a pandoc title block, # and ##
# headings, paragraphs, trailing-backslash line breaks, pandoc definition lists
# (a term line, then ":   definition"), - and 1. lists, fenced code blocks,
# pipe tables (shown preformatted), and `code`, **bold**, *emphasis*,
# [text](link) inline.
#   awk -v title=imageswitch.8 -v date=2026-11-23 -v version="imageswitch 0.1.0" -f md2man.awk SRC
BEGIN {
    n = split(title, part, ".")
    section = part[n]
    name = substr(title, 1, length(title) - length(section) - 1)
    printf ".TH \"%s\" \"%s\" \"%s\" \"%s\" \"imageswitch\"\n", toupper(name), section, date, version
    in_code = 0
    para = 0
    pending = ""
    have_pending = 0
}

function escape(s) {
    gsub(/\\/, "\\e", s)
    gsub(/-/, "\\-", s)
    return s
}

function inline(s,    out, m) {
    s = escape(s)
    out = ""
    # [text](link) -> text
    while (match(s, /\[[^]]*\]\([^)]*\)/)) {
        m = substr(s, RSTART, RLENGTH)
        sub(/\]\([^)]*\)$/, "", m)
        out = out substr(s, 1, RSTART - 1) substr(m, 2)
        s = substr(s, RSTART + RLENGTH)
    }
    s = out s
    while (match(s, /`[^`]+`/))
        s = substr(s, 1, RSTART - 1) "\\fB" substr(s, RSTART + 1, RLENGTH - 2) "\\fR" substr(s, RSTART + RLENGTH)
    while (match(s, /\*\*[^*]+\*\*/))
        s = substr(s, 1, RSTART - 1) "\\fB" substr(s, RSTART + 2, RLENGTH - 4) "\\fR" substr(s, RSTART + RLENGTH)
    while (match(s, /\*[^* ][^*]*\*/))
        s = substr(s, 1, RSTART - 1) "\\fI" substr(s, RSTART + 1, RLENGTH - 2) "\\fR" substr(s, RSTART + RLENGTH)
    if (s ~ /^[.']/)
        s = "\\&" s
    return s
}

# One line of running text; a trailing backslash is a hard line break.
function emit_text(s,    brk) {
    brk = (s ~ /\\$/)
    if (brk) sub(/\\$/, "", s)
    print inline(s)
    if (brk) print ".br"
}

# Text lines are held back one line: the next line may say it was a term.
function flush() {
    if (!have_pending) return
    if (para) {
        # An indented paragraph inside a definition stays indented.
        print (in_def && pending_indented) ? ".IP" : ".PP"
        para = 0
        if (!pending_indented) in_def = 0
        in_list = 0
    }
    emit_text(pending)
    have_pending = 0
}

# A table or code block after a list item starts back at the left margin.
function end_list() {
    if (in_list) { print ".PP"; in_list = 0 }
}

/^```/ {
    flush()
    if (in_code) { print ".fi"; print ".RE"; in_code = 0 }
    else { end_list(); print ".RS 4"; print ".nf"; in_code = 1 }
    next
}
in_code {
    line = escape($0)
    if (line ~ /^[.']/) line = "\\&" line
    print line
    next
}

# pandoc title block and a leading "# name(8)" title: the .TH line covers them.
/^%/ && NR <= 3 { next }
/^# [A-Za-z0-9._-]+\([0-9]\)/ && !seen_heading { seen_heading = 1; next }

/^# / { flush(); seen_heading = 1; para = 0; in_def = 0; sub(/^# +/, ""); print ".SH \"" toupper(escape($0)) "\""; next }
/^##+ / { flush(); seen_heading = 1; para = 0; in_def = 0; sub(/^##+ +/, ""); print ".SS \"" escape($0) "\""; next }

/^[ \t]*$/ { flush(); para = 1; next }

# Definition: the held-back line was its term.
/^:[ \t]+/ {
    term = have_pending ? pending : ""
    have_pending = 0
    print ".TP"
    emit_text(term)
    sub(/^:[ \t]+/, "")
    emit_text($0)
    in_def = 1
    para = 0
    next
}

# Tables: preformatted, without the |---| rule.
/^\|/ {
    flush()
    if ($0 ~ /^\|[ :|-]+\|?$/) next
    line = $0
    gsub(/^\| ?| ?\|$/, "", line)
    gsub(/ ?\| ?/, "  ", line)
    end_list()
    print ".nf"; print inline(line); print ".fi"
    para = 0
    next
}

/^[ \t]*[-*] / {
    flush(); sub(/^[ \t]*[-*] +/, ""); print ".IP \\(bu 2"; emit_text($0); para = 0; in_list = 1; next
}
/^[ \t]*[0-9]+\. / {
    flush()
    match($0, /[0-9]+\./)
    num = substr($0, RSTART, RLENGTH)
    sub(/^[ \t]*[0-9]+\. +/, "")
    print ".IP " num " 4"; emit_text($0); para = 0; in_list = 1; next
}

{
    flush()
    pending_indented = ($0 ~ /^    /)
    pending = $0
    sub(/^[ \t]+/, "", pending)
    have_pending = 1
}

END { flush(); if (in_code) { print ".fi"; print ".RE" } }
