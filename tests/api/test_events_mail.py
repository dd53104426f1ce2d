"""Issue 12, point 5: mail to the marketing contact (DESIGN §4b, R9 "we will email instructions
to your marketing contact") when a Go-To-Market offer is requested, completed or rejected, from
the outbox with the webhooks' retries, through SMTP_URL (scripts/lib.sh points it at a free
port; this test runs a python3-aiosmtpd sink there, and stops it to play "SMTP down")."""
from __future__ import annotations

import os
import threading
import time
import urllib.parse
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest

from fresh_partner import GOLD_CORE, fresh_partner, set_contact
from helpers import (BASE, Client, assert_problem, db_all, db_val, idem, operator_token,
                     spawn_server, token)

aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="python3-aiosmtpd (scripts/lib.sh)")


class Sink:
    def __init__(self):
        self.mails: list = []
        self.lock = threading.Lock()
        u = urllib.parse.urlparse(os.environ["SMTP_URL"])
        self.port = u.port
        self.ctl = None

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.mails.append((envelope.mail_from, list(envelope.rcpt_tos),
                               message_from_bytes(envelope.original_content)))
        return "250 OK"

    def start(self):
        self.ctl = aiosmtpd.Controller(self, hostname="127.0.0.1", port=self.port)
        self.ctl.start()

    def stop(self):
        if self.ctl:
            self.ctl.stop()
            self.ctl = None

    def to(self, addr: str) -> list:
        with self.lock:
            return [m for _, rcpt, m in self.mails if addr in rcpt]

    def wait(self, cond, what: str, limit: float = 60):
        end = time.time() + limit
        while time.time() < end:
            if cond():
                return
            time.sleep(0.1)
        raise AssertionError(f"{what}: not seen; mails: {[m['Subject'] for _, _, m in self.mails]}")


def _subject(m) -> str:
    return str(make_header(decode_header(m["Subject"])))


def _body(m) -> str:
    return m.get_payload(decode=True).decode()


@pytest.fixture
def sink():
    s = Sink()
    s.start()
    yield s
    s.stop()


def _request(f, product: str) -> str:
    c = Client(BASE, token(f.users["mpn_partner_admin"], f.partner, ["mpn_partner_admin"]))
    r = c.post(f"/v1/partners/{f.partner}/benefits/{f.benefits[product]}/activation",
               headers=idem(), json={})
    assert r.status_code == 202, r.text
    c.close()
    return r.headers["Location"].rsplit("/", 1)[1]


@pytest.mark.seed("S38", "S42")
def test_the_marketing_contact_gets_the_go_to_market_mails(sink):
    f = fresh_partner()
    set_contact(f)
    to = f"marketing-{f.partner[:8]}@fresh.example"
    name = db_val("SELECT name FROM partners WHERE id = %s", f.partner)
    offer = db_val("SELECT name FROM products WHERE id = %s", GOLD_CORE)
    aid = _request(f, GOLD_CORE)
    sink.wait(lambda: len(sink.to(to)) == 1, "the request mail")
    m = sink.to(to)[0]
    assert offer in _subject(m) and name in _subject(m) and "request received" in _subject(m)
    assert m["From"] == os.environ["MAIL_FROM"] and m["To"] == to
    assert offer in _body(m) and name in _body(m)
    op = Client(BASE, operator_token())
    r = op.post(f"/v1/admin/activations/{aid}/complete", headers=idem(), json={})
    assert r.status_code == 200, r.text
    sink.wait(lambda: len(sink.to(to)) == 2, "the completion mail")
    m = sink.to(to)[1]
    assert "activated" in _subject(m)
    assert "is active" in _body(m) and offer in _body(m)
    if r.json().get("expires_at"):
        assert r.json()["expires_at"][:10] in _body(m)
    # the SMTP server has the mail before the worker records it: wait for the record
    sink.wait(lambda: db_val("SELECT count(*) FROM mail_deliveries WHERE partner_id = %s "
                             "AND status = 'succeeded'", f.partner) == 2,
              "both deliveries recorded as succeeded")
    # another partner's request, rejected
    f2 = fresh_partner()
    set_contact(f2)
    to2 = f"marketing-{f2.partner[:8]}@fresh.example"
    aid2 = _request(f2, GOLD_CORE)
    r = op.post(f"/v1/admin/activations/{aid2}/reject", headers=idem(),
                json={"reason": "Competency evidence missing"})
    assert r.status_code == 200, r.text
    sink.wait(lambda: len(sink.to(to2)) == 2, "the rejection mail")
    m = [x for x in sink.to(to2) if "not approved" in _subject(x)]
    assert len(m) == 1 and "Competency evidence missing" in _body(m[0])
    assert len(sink.to(to)) == 2  # nothing for the first partner's contact
    op.close()


def test_smtp_down_is_retried_then_delivered():
    s = Sink()  # not started: SMTP is down
    f = fresh_partner()
    set_contact(f)
    to = f"marketing-{f.partner[:8]}@fresh.example"
    _request(f, GOLD_CORE)
    end = time.time() + 60
    while time.time() < end and (db_val("SELECT attempts FROM mail_deliveries WHERE "
                                        "partner_id = %s", f.partner) or 0) < 2:
        time.sleep(0.1)
    row = db_val("SELECT status || ' ' || attempts || ' ' || COALESCE(last_error, '') "
                 "FROM mail_deliveries WHERE partner_id = %s", f.partner)
    assert row.startswith("pending") and int(row.split()[1]) >= 2, row
    s.start()
    try:
        s.wait(lambda: len(s.to(to)) == 1, "the mail once SMTP is back")
        s.wait(lambda: db_val("SELECT status FROM mail_deliveries WHERE partner_id = %s",
                              f.partner) == "succeeded", "the delivery recorded as succeeded")
    finally:
        s.stop()


@pytest.mark.seed("S38")
def test_no_mail_without_a_go_to_market_offer_or_contact():
    f = fresh_partner()  # no marketing contact: a GTM request is refused (409) anyway
    c = Client(BASE, token(f.users["global_admin"], f.partner, ["global_admin"]))
    r = c.patch(f"/v1/partners/{f.partner}/users/{f.users['employee']}",
                json={"display_name": "No mail"})
    assert r.status_code == 200
    assert db_val("SELECT count(*) FROM mail_deliveries WHERE partner_id = %s", f.partner) == 0


def test_without_smtp_url_mails_are_recorded_as_not_sent_and_logged():
    f = fresh_partner()
    set_contact(f)
    _request(f, GOLD_CORE)
    with spawn_server(env_overrides={"SMTP_URL": None}) as s:
        end = time.time() + 60
        while time.time() < end and db_val("SELECT status FROM mail_deliveries WHERE "
                                           "partner_id = %s", f.partner) != "not_sent":
            time.sleep(0.1)
        row = db_all("SELECT status, last_error FROM mail_deliveries WHERE partner_id = %s",
                     f.partner)
        assert row == [("not_sent", "SMTP_URL is not set")]
        time.sleep(0.5)
        assert "mail: not sent (SMTP_URL is not set)" in s.log() and f.partner in s.log()
    # and the operator sees it (through the contract)
    op = Client(BASE, operator_token())
    items, cursor = [], None
    while True:
        r = op.get("/v1/admin/mail-deliveries",
                   params={"status": "not_sent", "limit": 50, **({"cursor": cursor} if cursor
                                                                  else {})})
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    mine = [m for m in items if m["partner_id"] == f.partner]
    assert len(mine) == 1 and mine[0]["last_error"] == "SMTP_URL is not set"
    assert mine[0]["to"] == f"marketing-{f.partner[:8]}@fresh.example"
    assert all(m["status"] == "not_sent" for m in items)
    assert_problem(op.get("/v1/admin/mail-deliveries", params={"status": "lost"}), 422,
                   "validation-failed")
    op.close()
