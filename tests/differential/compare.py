"""Differences between dockerd's records and pyd's, and the allow-list check."""

import fnmatch

from tests.differential.shape import diff


def failed(status):
    return not isinstance(status, int) or status >= 400


def differences(want_records, have_records):
    """[(group, label, what, path, detail)] for records matched by label.

    what: status, kind, missing, extra, type, payload, header, absent (a
    step one daemon's run did not record).
    """
    out = []
    have = {f'{r["group"]}/{r["label"]}': r for r in have_records}
    for w in want_records:
        key = f'{w["group"]}/{w["label"]}'
        h = have.get(key)
        where = f'{w["method"]} {w["path"]}'
        if h is None:
            out.append((w["group"], w["label"], "absent", where, "no record from pyd"))
            continue
        if w["status"] != h["status"]:
            out.append((w["group"], w["label"], "status", where, f'dockerd {w["status"]}, pyd {h["status"]}'))
        if w["status"] != h["status"] and (failed(w["status"]) or failed(h["status"])):
            continue  # an error on one side: its body's shape would only repeat that
        if w["kind"] != h["kind"]:
            out.append((w["group"], w["label"], "kind", where, f'dockerd {w["kind"]}, pyd {h["kind"]}'))
        elif w["shape"] is not None or h["shape"] is not None:
            for path, what, detail in diff(w["shape"], h["shape"]):
                out.append((w["group"], w["label"], what, path, detail))
        if w["kind"] == h["kind"] == "json-stream" and w.get("payload") is not None:
            wp, hp = set(map(tuple, w["payload"])), set(map(tuple, h.get("payload") or ()))
            for t, a in sorted(wp - hp, key=str):
                out.append((w["group"], w["label"], "event-missing", f"{t}/{a}", "dockerd sent it, pyd did not"))
            for t, a in sorted(hp - wp, key=str):
                out.append((w["group"], w["label"], "event-extra", f"{t}/{a}", "pyd sent it, dockerd did not"))
        elif w.get("payload") != h.get("payload"):
            out.append((w["group"], w["label"], "payload", where,
                        f'dockerd {w.get("payload")!r:.400}, pyd {h.get("payload")!r:.400}'))
        if w.get("header") != h.get("header"):
            if w.get("header") is None or h.get("header") is None:
                out.append((w["group"], w["label"], "header", where, f'dockerd {w.get("header")!r:.200}, pyd {h.get("header")!r:.200}'))
            else:
                for path, what, detail in diff(w["header"], h["header"]):
                    out.append((w["group"], w["label"], "header-" + what, path, detail))
    return out


def allowed(d, allow):
    """The allow-list entry that covers difference d, or None."""
    group, label, what, path, detail = d
    for entry in allow:
        if (fnmatch.fnmatchcase(f"{group}/{label}", entry["step"])
                and fnmatch.fnmatchcase(what, entry.get("what", "*"))
                and fnmatch.fnmatchcase(path, entry.get("path", "*"))
                and fnmatch.fnmatchcase(detail, entry.get("detail", "*"))):
            return entry
    return None


def report(diffs, allow):
    """Text for the differences file: unexplained first, then allowed ones with their reasons."""
    lines, used = [], set()
    bad = [d for d in diffs if allowed(d, allow) is None]
    lines.append(f"{len(diffs)} differences between dockerd 20.10 and pyd; {len(bad)} not on the allow-list")
    lines.append("")
    lines.append("## not allowed")
    for g, lab, what, path, detail in bad:
        lines.append(f"{g}/{lab}: {what} {path}: {detail}")
    lines.append("")
    lines.append("## allowed (tests/differential/allow.py, docs/differential.md)")
    by_entry = {}
    for d in diffs:
        e = allowed(d, allow)
        if e is not None:
            by_entry.setdefault(id(e), (e, []))[1].append(d)
    for e, ds in by_entry.values():
        used.add(id(e))
        lines.append(f"- {e['reason']}")
        for g, lab, what, path, detail in ds:
            lines.append(f"    {g}/{lab}: {what} {path}: {detail}")
    stale = [e for e in allow if id(e) not in used]
    if stale:
        lines.append("")
        lines.append("## allow-list entries that matched nothing (remove them once sure)")
        for e in stale:
            lines.append(f"{e['step']} {e.get('what', '*')} {e.get('path', '*')}: {e['reason']}")
    return "\n".join(lines) + "\n", bad
