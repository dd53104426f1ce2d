#!/usr/bin/python3
"""Fail when a Prism 5.14.2 proxy log shows that the service broke the contract.

    prism-check.py PRISM_LOG

What Prism logs (checked with 5.14.2, `prism proxy` without --errors, output not a TTY):

    [1:31:21 AM] › [HTTP SERVER] get /things/1 ℹ  info      Request received
    [1:31:21 AM] ›     [VALIDATOR] ✖  error     Violation: response.body Response body must have required property 'name'
    [1:31:21 AM] ›     [VALIDATOR] ⚠  warning   Violation: response Unable to match the returned status code with those defined in the document: 200,404
    [1:31:26 AM] ›     [VALIDATOR] ⚠  warning   Violation: request Selected route not found
    [1:31:26 AM] ›     [VALIDATOR] ✖  error     Violation: request.body Request body must NOT have additional properties; found 'zzz'
    [1:32:03 AM] › [HTTP SERVER] get /x ✖  error     Request terminated with error: FetchError: ...

The rule: a line fails the run when it holds
  * `Violation: response` at any severity (error or warning): a body, header or media type that
    does not match, or a status code the document does not list for that operation (a warning,
    or an error when the request had errors too); or
  * `Request terminated with error`: Prism got no usable answer from the service (connection
    refused or reset, or a JSON content type with a body that is not JSON, e.g. on HEAD).
`Violation: request…` lines never fail it: the tests send bad requests on purpose.
Exit 0 when clean, 1 with the offending lines (and the request each belongs to) otherwise, and
1 when the log shows no proxied request at all (nothing was checked).
"""
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
REQUEST = re.compile(r"\[HTTP SERVER\]\s+(\S+)\s+(\S+).*Request received")
BAD = re.compile(r"Violation: response\b|Request terminated with error")


def main(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [ANSI.sub("", l.rstrip("\n")) for l in f]
    except OSError as e:
        print(f"prism-check: cannot read {path}: {e}", file=sys.stderr)
        return 1
    last_request = "(before any request)"
    requests = 0
    bad = []
    for n, line in enumerate(lines, 1):
        m = REQUEST.search(line)
        if m:
            requests += 1
            last_request = f"{m.group(1).upper()} {m.group(2)}"
            continue
        if BAD.search(line):
            msg = line.split("Violation: ", 1)[-1] if "Violation: " in line else line.split("error", 1)[-1].strip()
            bad.append(f"  {path}:{n}: {last_request}: {msg}")
    if requests == 0:
        # Nothing proxied means nothing checked: a run whose tests bypassed Prism (or a log
        # format this script no longer reads) must not pass as "no violation".
        print(f"prism-check: no proxied request found in {path}: nothing was checked",
              file=sys.stderr)
        return 1
    if bad:
        print(f"prism-check: {len(bad)} contract problem(s) in {requests} proxied requests:",
              file=sys.stderr)
        print("\n".join(bad), file=sys.stderr)
        return 1
    print(f"prism-check: {requests} proxied requests, no response violation")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
