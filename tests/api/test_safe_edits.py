"""Issue 13, safe edits (DESIGN §4b): GET of a user and of a partner answer a strong ETag (a hash
of the document); PATCH takes it back in If-Match (stale: 412 `precondition-failed`, malformed:
400 `malformed-header`, absent: no check, 428 is never used) and takes
application/merge-patch+json as well as application/json. The compare runs inside the write
transaction after the row lock: two PATCHes with the same If-Match give one 200 and one 412."""
from __future__ import annotations

import threading

import pytest

from fresh_partner import fresh_partner
from helpers import BASE, Client, assert_problem, operator_token

MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def opc():
    c = Client(BASE, operator_token())
    yield c
    c.close()


def test_user_etag_if_match_stale_412_and_other_users_untouched():
    f = fresh_partner()
    ga = f.client(BASE)
    a = f.path(f"/users/{f.users['employee']}")
    b = f.path(f"/users/{f.users['admin_agent']}")
    ra, rb = ga.get(a), ga.get(b)
    assert ra.status_code == 200 and rb.status_code == 200
    tag_a, tag_b = ra.headers["ETag"], rb.headers["ETag"]
    assert tag_a.startswith('"') and tag_a != tag_b  # strong, per user
    assert ga.get(a).headers["ETag"] == tag_a  # stable while nothing changes (also cached)
    assert ga.get(a, headers={"If-None-Match": tag_a}).status_code == 304

    r = ga.patch(a, json={"display_name": "Renamed once"}, headers={"If-Match": tag_a})
    assert r.status_code == 200, r.text
    new_a = r.headers["ETag"]
    assert new_a != tag_a and ga.get(a).headers["ETag"] == new_a
    # an edit of user A leaves user B's ETag as it was
    assert ga.get(b).headers["ETag"] == tag_b
    r = ga.patch(b, json={"display_name": "B renamed"}, headers={"If-Match": tag_b})
    assert r.status_code == 200, r.text

    # the stale tag: 412, nothing written, the current ETag named
    body = assert_problem(ga.patch(a, json={"display_name": "Lost update"},
                                   headers={"If-Match": tag_a}), 412, "precondition-failed")
    assert body["current_etag"] == new_a
    assert ga.get(a).json()["display_name"] == "Renamed once"
    # a weak tag never matches (strong comparison); "*" and a list with the current one do
    assert_problem(ga.patch(a, json={"display_name": "x"}, headers={"If-Match": "W/" + new_a}),
                   412, "precondition-failed")
    r = ga.patch(a, json={"display_name": "Star"}, headers={"If-Match": "*"})
    assert r.status_code == 200, r.text
    cur = r.headers["ETag"]
    r = ga.patch(a, json={"display_name": "Listed"}, headers={"If-Match": f'"nope", {cur}'})
    assert r.status_code == 200, r.text
    # If-Match stays optional (no 428)
    r = ga.patch(a, json={"display_name": "No precondition"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("value", ['abc', '"unterminated', 'W/abc', '"a" "b"', '"a",, x', '"a" x'])
def test_malformed_if_match_is_400(value):
    f = fresh_partner()
    ga = f.client(BASE).direct
    path = f.path(f"/users/{f.users['employee']}")
    before = ga.get(path).json()
    assert_problem(ga.patch(path, json={"display_name": "x"}, headers={"If-Match": value}), 400,
                   "malformed-header")
    assert ga.get(path).json() == before


def test_partner_etag_and_if_match_on_the_operator_patch(opc):
    f = fresh_partner()
    ga = f.client(BASE)
    r = ga.get(f.path())
    tag = r.headers["ETag"]
    assert tag.startswith('"')
    assert opc.get(f.path()).headers["ETag"] == tag  # the same document, the same ETag
    admin = f"/v1/admin/partners/{f.partner}"
    r = opc.patch(admin, json={"name": "Renamed partner"}, headers={"If-Match": tag})
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == ga.get(f.path()).headers["ETag"] != tag
    assert_problem(opc.patch(admin, json={"name": "Lost"}, headers={"If-Match": tag}), 412,
                   "precondition-failed")
    assert ga.get(f.path()).json()["name"] == "Renamed partner"
    assert_problem(opc.direct.patch(admin, json={"name": "x"}, headers={"If-Match": "nope"}),
                   400, "malformed-header")
    # a change elsewhere in the partner (a user) leaves the partner's ETag alone
    cur = ga.get(f.path()).headers["ETag"]
    assert ga.patch(f.path(f"/users/{f.users['employee']}"),
                    json={"display_name": "Someone"}).status_code == 200
    assert ga.get(f.path()).headers["ETag"] == cur


def test_merge_patch_media_type_on_users_and_partners(opc):
    f = fresh_partner()
    ga = f.client(BASE)
    path = f.path(f"/users/{f.users['admin_agent']}")
    tag = ga.get(path).headers["ETag"]
    r = ga.patch(path, data=b'{"display_name": "Merged"}', headers=dict(MERGE, **{"If-Match": tag}))
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "Merged"
    # RFC 7396: null removes a member; roles can be emptied, a display name cannot
    r = ga.patch(path, data=b'{"roles": null}', headers=MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["roles"] == []
    body = assert_problem(ga.patch(path, data=b'{"display_name": null}', headers=MERGE), 422,
                          "validation-failed")
    assert body["errors"][0]["field"] == "display_name"
    assert_problem(ga.patch(path, data=b'{"display_name": "x"}',
                            headers={"Content-Type": "text/plain"}), 415,
                   "unsupported-media-type")

    admin = f"/v1/admin/partners/{f.partner}"
    r = opc.patch(admin, data=b'{"co_sell_ready": false}', headers=MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["co_sell_ready"] is False
    r = opc.patch(admin, data=b'{"competencies": null}', headers=MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["competencies"] == []
    body = assert_problem(opc.patch(admin, data=b'{"name": null}', headers=MERGE), 422)
    assert body["errors"][0]["field"] == "name"


@pytest.mark.parametrize("kind", ["user", "partner"])
def test_two_concurrent_patches_with_the_same_if_match_one_wins(opc, kind):
    """The compare runs after the row lock, in the write's transaction: of PATCHes sent at the
    same moment with the same If-Match, exactly one is applied and the others answer 412."""
    f = fresh_partner()
    ga = f.client(BASE)
    if kind == "user":
        get_path = f.path(f"/users/{f.users['employee']}")
        patch_path, client, field = get_path, ga, "display_name"
    else:
        get_path = f.path()
        patch_path, client, field = f"/v1/admin/partners/{f.partner}", opc, "name"
    tag = ga.get(get_path).headers["ETag"]
    n = 6
    barrier = threading.Barrier(n)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        c = client.direct
        barrier.wait()
        r = c.patch(patch_path, json={field: f"Writer {i}"}, headers={"If-Match": tag})
        with lock:
            results.append((r.status_code, f"Writer {i}"))
        c.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(code for code, _ in results)
    assert codes == [200] + [412] * (n - 1), results
    winner = next(name for code, name in results if code == 200)
    assert ga.get(get_path).json()[field] == winner
