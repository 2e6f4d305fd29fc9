# Flatten the small YAML subset of NoCloud seeds into "path=value" lines (busybox awk).
#
#   key: value               -> key=value
#   key:  + indented block   -> nested path, joined with "."
#   key: [a, "b"]            -> key=a, key=b          (one line per item)
#   key: {k: v, k2: [x]}     -> key.k=v, key.k2=x
#   key:  + "- item" lines   -> key=item per scalar item
#   key:  + "- k: v" items   -> key.0.k=v, key.1.k=... (list of mappings, numbered)
#
# Quotes around scalars are removed; full-line comments, "---" and blank lines are ignored.
# This is not a YAML parser: it reads what guest/README.md documents, nothing more.

function trim(s) {
    sub(/^[ \t]+/, "", s)
    sub(/[ \t\r]+$/, "", s)
    return s
}

function unquote(s) {
    s = trim(s)
    if (s ~ /^'.*'$/) {
        s = substr(s, 2, length(s) - 2)
        gsub(/''/, "'", s)  # a quote inside single quotes is written twice
    } else if (s ~ /^".*"$/)
        s = substr(s, 2, length(s) - 2)
    return s
}

# Split a flow collection body on top-level commas into parts[1..n]; returns n.
function split_flow(body, parts,    n, i, c, depth, q, cur) {
    n = 0; depth = 0; q = ""; cur = ""
    for (i = 1; i <= length(body); i++) {
        c = substr(body, i, 1)
        if (q != "") {
            if (c == q) q = ""
        } else if (c == "\"" || c == "'") {
            q = c
        } else if (c == "[" || c == "{") {
            depth++
        } else if (c == "]" || c == "}") {
            depth--
        } else if (c == "," && depth == 0) {
            parts[++n] = cur; cur = ""; continue
        }
        cur = cur c
    }
    if (trim(cur) != "") parts[++n] = cur
    return n
}

# Index of the ":" that separates a key from its value (first ':' followed by space or end,
# outside quotes), or 0.
function key_colon(s,    i, c, q) {
    q = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (q != "") { if (c == q) q = ""; continue }
        if (c == "\"" || c == "'") { q = c; continue }
        if (c == ":" && (i == length(s) || substr(s, i + 1, 1) ~ /[ \t]/)) return i
        if (c == "[" || c == "{") return 0
    }
    return 0
}

function join(p, k) { return p == "" ? k : p "." k }

function emit(p, v,    parts, n, i, j, item) {
    v = trim(v)
    if (v ~ /^\[.*\]$/) {
        n = split_flow(substr(v, 2, length(v) - 2), parts)
        for (i = 1; i <= n; i++) emit(p, parts[i])
        return
    }
    if (v ~ /^\{.*\}$/) {
        n = split_flow(substr(v, 2, length(v) - 2), parts)
        for (i = 1; i <= n; i++) {
            item = trim(parts[i])
            j = key_colon(item)
            if (j == 0) j = index(item, ":")
            if (j > 0) emit(join(p, unquote(substr(item, 1, j - 1))), substr(item, j + 1))
        }
        return
    }
    print p "=" unquote(v)
}

function path_of(    p, i) {
    p = ""
    for (i = 1; i <= depth; i++) p = join(p, name[i])
    return p
}

# Handle "content" found at column "ind".
function line(ind, content,    k, v, j, base, rest, pad, dash) {
    dash = content ~ /^-([ \t]|$)/
    # a "- item" may sit at the same column as its parent key; a sibling item closes the
    # previous one
    while (depth > 0 && (indent[depth] > ind || (indent[depth] == ind && (!dash || item[depth]))))
        depth--
    if (dash) {
        rest = substr(content, 2)
        pad = match(rest, /[^ \t]/) ? RSTART : length(rest) + 1
        rest = substr(rest, pad)
        base = path_of()
        if (key_colon(rest) > 0 && rest !~ /^["'\[{]/) {
            # an item that is itself a mapping: number it, then read "k: v" one level deeper
            depth++
            indent[depth] = ind
            item[depth] = 1
            name[depth] = count[base]++ ""
            line(ind + 1 + pad, rest)
        } else if (rest != "") {
            emit(base, rest)
        }
        return
    }
    j = key_colon(content)
    if (j == 0) return
    k = unquote(substr(content, 1, j - 1))
    v = trim(substr(content, j + 1))
    if (v == "" || v ~ /^[|>]/) {
        depth++
        indent[depth] = ind
        item[depth] = 0
        name[depth] = k
    } else {
        emit(join(path_of(), k), v)
    }
}

BEGIN { depth = 0 }
{
    s = $0
    sub(/\r$/, "", s)
    if (s ~ /^[ \t]*(#|$)/ || s ~ /^---/ || s ~ /^\.\.\./) next
    match(s, /^[ ]*/)
    line(RLENGTH, substr(s, RLENGTH + 1))
}
