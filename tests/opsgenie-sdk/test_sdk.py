"""Drives a running Tocsin with the official Opsgenie Python SDK (`opsgenie-sdk` on PyPI).

The SDK is used exactly as an Opsgenie user would, changed only in its host: a
`Configuration` with `host` and the `GenieKey` API key, `AlertApi` calls, and the SDK's
own response models. Every step asserts on what the SDK returned, so a response the SDK
cannot parse (a missing `requestId`/`took`, an alert without `id`, an unparsable time)
fails here just as it would fail for a user.

Environment: TOCSIN_URL (base URL, e.g. http://127.0.0.1:8080) and TOCSIN_INTEGRATION_KEY
(the token of an API integration). Run by tests/opsgenie-sdk/run.sh, which starts a fresh
server. The last line printed is `N passed, N failed` (`, N skipped` when steps could not
run because one they depend on failed); the exit status is non-zero on any failure.
"""

import datetime
import json
import os
import sys
import time
import traceback
import uuid

import opsgenie_sdk
from opsgenie_sdk.exceptions import ApiException

# Request statuses: Opsgenie processes writes asynchronously, so clients poll. Tocsin
# answers at once, but the loop is bounded either way: never an endless wait in CI.
STATUS_TRIES = 20
STATUS_DELAY = 0.25


class Skip(Exception):
    """A step that cannot run because a step it depends on failed."""


def fail(msg):
    raise AssertionError(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def eq(actual, expected, what):
    if actual != expected:
        fail("{}: expected {!r}, got {!r}".format(what, expected, actual))


def is_uuid(s):
    try:
        uuid.UUID(str(s))
        return True
    except ValueError:
        return False


def utc_datetime(value, what):
    """The SDK parses times into datetime; Opsgenie sends RFC 3339 UTC."""
    check(isinstance(value, datetime.datetime), "{}: expected a datetime, got {!r}".format(what, value))
    check(value.tzinfo is not None, "{} has no time zone: {!r}".format(what, value))
    eq(value.utcoffset(), datetime.timedelta(0), what + " UTC offset")


class Scenario:
    def __init__(self, url, key):
        conf = opsgenie_sdk.configuration.Configuration()
        conf.host = url
        conf.api_key["Authorization"] = key
        conf.api_key_prefix["Authorization"] = "GenieKey"
        self.client = opsgenie_sdk.api_client.ApiClient(configuration=conf)
        self.alerts = opsgenie_sdk.AlertApi(api_client=self.client)
        # Unique per run, so the queries below match only this run's alerts even if the
        # server is not fresh. Letters and digits only: a plain search term.
        self.run = "run" + uuid.uuid4().hex[:10]
        self.alias = "sdk-disk-" + self.run
        self.state = {}
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    # -- helpers ---------------------------------------------------------------------

    def need(self, *names):
        missing = [n for n in names if n not in self.state]
        if missing:
            raise Skip("needs " + ", ".join(missing) + " from an earlier step")
        return [self.state[n] for n in names]

    def accepted(self, resp, what):
        """An async write: 202 with `result`, `took` and `requestId`, as SuccessResponse."""
        check(isinstance(resp, opsgenie_sdk.SuccessResponse), "{}: not a SuccessResponse: {!r}".format(what, resp))
        check(is_uuid(resp.request_id), "{}: requestId is not a UUID: {!r}".format(what, resp.request_id))
        check(isinstance(resp.took, (int, float)) and not isinstance(resp.took, bool),
              "{}: took is not a number: {!r}".format(what, resp.took))
        eq(resp.result, "Request will be processed", what + " result")
        last = self.client.last_response
        eq(last.status, 202, what + " HTTP status")
        # Opsgenie's Go SDK reads the request id from this header.
        eq(last.getheader("X-Request-ID"), resp.request_id, what + " X-Request-ID header vs body requestId")
        return resp.request_id

    def status(self, request_id, what):
        """Polls GET /v2/alerts/requests/{id} until processed, a bounded number of times.

        A 404 is what Opsgenie answers while a request is not processed yet; anything
        else is a real answer.
        """
        last_error = None
        for attempt in range(STATUS_TRIES):
            if attempt:
                time.sleep(STATUS_DELAY)
            try:
                resp = self.alerts.get_request_status(request_id=request_id)
            except ApiException as e:
                if e.status == 404:
                    last_error = e
                    continue
                raise
            check(isinstance(resp, opsgenie_sdk.GetRequestStatusResponse), "{}: {!r}".format(what, resp))
            check(is_uuid(resp.request_id), what + ": status response requestId is not a UUID")
            data = resp.data
            check(isinstance(data, opsgenie_sdk.AlertRequestStatus), "{}: data is {!r}".format(what, data))
            return data
        fail("{}: request {} not processed after {} tries: {}".format(what, request_id, STATUS_TRIES, last_error))

    def processed_ok(self, request_id, what, action=None):
        data = self.status(request_id, what)
        check(data.is_success is True, "{}: request status isSuccess={!r}, status={!r}".format(
            what, data.is_success, data.status))
        if action is not None:
            eq(data.action, action, what + " action")
        check(isinstance(data.status, str) and data.status, what + ": status text is empty")
        utc_datetime(data.processed_at, what + " processedAt")
        check(isinstance(data.alert_id, str) and data.alert_id, what + ": alertId is empty")
        return data

    def get(self, identifier, identifier_type=None):
        kwargs = {"identifier": identifier}
        if identifier_type:
            kwargs["identifier_type"] = identifier_type
        resp = self.alerts.get_alert(**kwargs)
        check(isinstance(resp, opsgenie_sdk.GetAlertResponse), "get_alert returned {!r}".format(resp))
        check(is_uuid(resp.request_id), "get_alert requestId is not a UUID")
        check(isinstance(resp.data, opsgenie_sdk.Alert), "get_alert data is {!r}".format(resp.data))
        return resp.data

    # -- steps -----------------------------------------------------------------------

    def step_create(self):
        payload = opsgenie_sdk.CreateAlertPayload(
            message="Disk full on db1",
            alias=self.alias,
            description="/var is at 98%",
            tags=["sdk", "disk", self.run],
            details={"host": "db1", "mount": "/var"},
            entity="db1",
            source="python-sdk-test",
            priority="P2",
            user="sdk-test",
            note="created by the Python SDK",
        )
        resp = self.alerts.create_alert(create_alert_payload=payload)
        self.state["create_request"] = resp
        self.state["create_request_id"] = self.accepted(resp, "create_alert")

    def step_request_status(self):
        (request_id,) = self.need("create_request_id")
        data = self.processed_ok(request_id, "create request status", action="Create")
        eq(data.alias, self.alias, "request status alias")
        check(isinstance(data.integration_id, str) and data.integration_id,
              "request status integrationId is empty: {!r}".format(data.integration_id))
        self.state["alert_id"] = data.alert_id

    def step_sdk_short_polling(self):
        """The SDK's own helpers on the create response: retrieve_result, id,
        retrieve_resulting_action (they call get_request_status and get_alert)."""
        resp, alert_id = self.need("create_request", "alert_id")
        status = resp.retrieve_result()
        check(status.data.is_success is True, "retrieve_result: isSuccess={!r}".format(status.data.is_success))
        eq(resp.id, alert_id, "SuccessResponse.id after retrieve_result")
        got = resp.retrieve_resulting_action()
        check(isinstance(got, opsgenie_sdk.GetAlertResponse), "retrieve_resulting_action returned {!r}".format(got))
        eq(got.data.id, alert_id, "retrieve_resulting_action alert id")

    def step_get_by_alias(self):
        (alert_id,) = self.need("alert_id")
        a = self.get(self.alias, "alias")
        eq(a.id, alert_id, "id")
        eq(a.alias, self.alias, "alias")
        eq(a.message, "Disk full on db1", "message")
        eq(a.description, "/var is at 98%", "description")
        eq(a.status, "open", "status")
        eq(a.acknowledged, False, "acknowledged")
        eq(a.snoozed, False, "snoozed")
        eq(sorted(a.tags), sorted(["sdk", "disk", self.run]), "tags")
        eq(a.details, {"host": "db1", "mount": "/var"}, "details")
        eq(a.entity, "db1", "entity")
        eq(a.source, "python-sdk-test", "source")
        eq(a.priority, "P2", "priority")
        eq(a.count, 1, "count")
        check(isinstance(a.tiny_id, str) and a.tiny_id.isdigit(), "tinyId is not a string of digits: {!r}".format(a.tiny_id))
        utc_datetime(a.created_at, "createdAt")
        utc_datetime(a.updated_at, "updatedAt")
        utc_datetime(a.last_occurred_at, "lastOccurredAt")
        check(isinstance(a.integration, opsgenie_sdk.AlertIntegration), "integration is {!r}".format(a.integration))
        eq(a.integration.name, "python-sdk", "integration.name")
        eq(a.integration.type, "API", "integration.type")
        check(a.report is None or isinstance(a.report, opsgenie_sdk.AlertReport), "report is {!r}".format(a.report))
        self.state["tiny_id"] = a.tiny_id
        self.state["created_at"] = a.created_at

    def step_get_by_tiny_id(self):
        alert_id, tiny_id = self.need("alert_id", "tiny_id")
        eq(self.get(tiny_id, "tiny").id, alert_id, "id of the alert got by tinyId")
        eq(self.get(alert_id).id, alert_id, "id of the alert got by id (default identifierType)")

    def step_deduplicate(self):
        """Same alias while open: no new alert, `count` goes up, the message stays."""
        (alert_id,) = self.need("alert_id")
        resp = self.alerts.create_alert(create_alert_payload=opsgenie_sdk.CreateAlertPayload(
            message="Disk full on db1 again", alias=self.alias, tags=["sdk", self.run], priority="P2"))
        data = self.processed_ok(self.accepted(resp, "duplicate create_alert"), "duplicate create status")
        eq(data.alert_id, alert_id, "alertId of the duplicate create")
        a = self.get(self.alias, "alias")
        eq(a.id, alert_id, "id after duplicate")
        eq(a.count, 2, "count after duplicate")
        eq(a.message, "Disk full on db1", "message after duplicate (kept)")
        check(a.last_occurred_at >= self.state.get("created_at", a.last_occurred_at),
              "lastOccurredAt went backwards")

    def step_other_alert(self):
        """A second alert without the `sdk` tag, for the queries to leave out."""
        resp = self.alerts.create_alert(create_alert_payload=opsgenie_sdk.CreateAlertPayload(
            message="CPU high on web1", alias="sdk-cpu-" + self.run, tags=["cpu", self.run], priority="P4"))
        data = self.processed_ok(self.accepted(resp, "second create_alert"), "second create status", action="Create")
        self.state["other_id"] = data.alert_id

    def step_list_with_query(self):
        alert_id, other_id = self.need("alert_id", "other_id")
        resp = self.alerts.list_alerts(query="status:open AND tag:sdk AND tag:" + self.run,
                                       limit=10, sort="createdAt", order="desc")
        check(isinstance(resp, opsgenie_sdk.ListAlertsResponse), "list_alerts returned {!r}".format(resp))
        check(is_uuid(resp.request_id), "list_alerts requestId is not a UUID")
        check(isinstance(resp.data, list), "list_alerts data is {!r}".format(resp.data))
        for a in resp.data:
            check(isinstance(a, opsgenie_sdk.BaseAlert), "list item is {!r}".format(a))
        eq([a.id for a in resp.data], [alert_id], "ids listed for status:open AND tag:sdk")
        a = resp.data[0]
        eq(a.status, "open", "listed status")
        eq(a.count, 2, "listed count")
        eq(a.alias, self.alias, "listed alias")
        check("sdk" in a.tags, "listed tags lack sdk: {!r}".format(a.tags))
        utc_datetime(a.created_at, "listed createdAt")
        check(resp.paging is None or isinstance(resp.paging, opsgenie_sdk.PageDetails),
              "paging is {!r}".format(resp.paging))
        # Without the tag filter both alerts of this run are open.
        resp = self.alerts.list_alerts(query="status:open AND tag:" + self.run)
        eq(sorted(a.id for a in resp.data), sorted([alert_id, other_id]), "ids listed for status:open AND tag:<run>")

    def step_count(self):
        self.need("alert_id", "other_id")
        resp = self.alerts.count_alerts(query="status:open AND tag:sdk AND tag:" + self.run)
        check(isinstance(resp, opsgenie_sdk.GetCountAlertsResponse), "count_alerts returned {!r}".format(resp))
        check(is_uuid(resp.request_id), "count_alerts requestId is not a UUID")
        eq(resp.data.count, 1, "count for status:open AND tag:sdk")
        eq(self.alerts.count_alerts(query="tag:" + self.run).data.count, 2, "count for tag:<run>")

    def step_acknowledge(self):
        """By alias and with no payload at all: the SDK then sends an empty-bodied POST."""
        (alert_id,) = self.need("alert_id")
        resp = self.alerts.acknowledge_alert(identifier=self.alias, identifier_type="alias")
        data = self.processed_ok(self.accepted(resp, "acknowledge_alert"), "acknowledge status", action="Acknowledge")
        eq(data.alert_id, alert_id, "alertId of the acknowledge")
        a = self.get(alert_id)
        eq(a.acknowledged, True, "acknowledged after acknowledge_alert")
        eq(a.status, "open", "status after acknowledge")
        check(isinstance(a.report, opsgenie_sdk.AlertReport), "report is {!r}".format(a.report))
        check(isinstance(a.report.ack_time, int) and a.report.ack_time >= 0,
              "report.ackTime is {!r}".format(a.report.ack_time))

    def step_notes(self):
        (alert_id,) = self.need("alert_id")
        resp = self.alerts.add_note(identifier=alert_id, add_note_to_alert_payload=opsgenie_sdk.AddNoteToAlertPayload(
            user="sdk-test", source="python-sdk-test", note="looking into it"))
        self.processed_ok(self.accepted(resp, "add_note"), "add_note status")
        resp = self.alerts.list_notes(identifier=alert_id)
        check(isinstance(resp, opsgenie_sdk.ListAlertNotesResponse), "list_notes returned {!r}".format(resp))
        check(is_uuid(resp.request_id), "list_notes requestId is not a UUID")
        for n in resp.data:
            check(isinstance(n, opsgenie_sdk.AlertNote), "note is {!r}".format(n))
            utc_datetime(n.created_at, "note createdAt")
        # Newest first (Opsgenie's default order is desc); the create's note is a note too.
        eq([n.note for n in resp.data], ["looking into it", "created by the Python SDK"], "notes")
        check(resp.paging is None or isinstance(resp.paging, opsgenie_sdk.AlertPaging),
              "paging is {!r}".format(resp.paging))
        # The same list by alias.
        eq(len(self.alerts.list_notes(identifier=self.alias, identifier_type="alias").data), 2, "notes by alias")

    def step_close(self):
        (alert_id,) = self.need("alert_id")
        resp = self.alerts.close_alert(identifier=alert_id, close_alert_payload=opsgenie_sdk.CloseAlertPayload(
            user="sdk-test", source="python-sdk-test", note="freed space"))
        data = self.processed_ok(self.accepted(resp, "close_alert"), "close status", action="Close")
        eq(data.alert_id, alert_id, "alertId of the close")
        a = self.get(alert_id)
        eq(a.status, "closed", "status after close_alert")
        check(isinstance(a.report, opsgenie_sdk.AlertReport) and isinstance(a.report.close_time, int)
              and a.report.close_time >= 0, "report.closeTime is {!r}".format(a.report and a.report.close_time))
        eq(self.get(self.alias, "alias").id, alert_id, "id got by alias after close")
        eq(self.alerts.count_alerts(query="status:open AND tag:sdk AND tag:" + self.run).data.count, 0,
           "open sdk alerts after close")
        eq(self.alerts.count_alerts(query="status:closed AND tag:" + self.run).data.count, 1,
           "closed alerts after close")
        self.state["closed"] = True

    def step_alias_after_close(self):
        """After close, the alias opens a fresh alert."""
        alert_id, _ = self.need("alert_id", "closed")
        resp = self.alerts.create_alert(create_alert_payload=opsgenie_sdk.CreateAlertPayload(
            message="Disk full on db1, once more", alias=self.alias, tags=["sdk", self.run]))
        data = self.processed_ok(self.accepted(resp, "create after close"), "create after close status", action="Create")
        check(data.alert_id != alert_id, "create after close reused the closed alert {}".format(alert_id))
        a = self.get(data.alert_id)
        eq(a.status, "open", "status of the new alert")
        eq(a.count, 1, "count of the new alert")
        eq(self.get(alert_id).status, "closed", "status of the old alert")

    def step_close_unknown_alias(self):
        """Opsgenie answers 202 to an action on an unknown alias and reports it in the status."""
        resp = self.alerts.close_alert(identifier="no-such-alias-" + self.run, identifier_type="alias")
        data = self.status(self.accepted(resp, "close of an unknown alias"), "close of an unknown alias status")
        eq(data.is_success, False, "isSuccess of closing an unknown alias")
        check(isinstance(data.status, str) and data.status, "status text of the failed close is empty")

    def step_missing_alert(self):
        """A synchronous read of a missing alert: 404 with a JSON error body."""
        try:
            self.alerts.get_alert(identifier="no-such-alias-" + self.run, identifier_type="alias")
        except ApiException as e:
            eq(e.status, 404, "status of get_alert for a missing alias")
            body = json.loads(e.body)
            check(isinstance(body.get("message"), str) and body["message"], "404 body has no message: {}".format(body))
            check(is_uuid(body.get("requestId")), "404 body has no requestId: {}".format(body))
            check(isinstance(body.get("took"), (int, float)), "404 body has no numeric took: {}".format(body))
            return
        fail("get_alert of a missing alias did not raise")

    def run_all(self):
        steps = [
            ("create_alert", self.step_create),
            ("get_request_status", self.step_request_status),
            ("SDK short polling (retrieve_result, id, retrieve_resulting_action)", self.step_sdk_short_polling),
            ("get_alert by alias", self.step_get_by_alias),
            ("get_alert by tiny id and by id", self.step_get_by_tiny_id),
            ("create_alert with the alias of an open alert bumps count", self.step_deduplicate),
            ("create_alert of a second alert", self.step_other_alert),
            ("list_alerts with a query", self.step_list_with_query),
            ("count_alerts", self.step_count),
            ("acknowledge_alert by alias without a payload", self.step_acknowledge),
            ("add_note and list_notes", self.step_notes),
            ("close_alert and get shows closed", self.step_close),
            ("create_alert with the alias of a closed alert opens a new one", self.step_alias_after_close),
            ("close_alert of an unknown alias: 202, isSuccess false", self.step_close_unknown_alias),
            ("get_alert of a missing alert: 404 with a JSON body", self.step_missing_alert),
        ]
        for name, fn in steps:
            try:
                fn()
            except Skip as e:
                self.skipped += 1
                print("SKIP {}: {}".format(name, e))
            except Exception as e:  # noqa: BLE001 - every failure is reported, then the next step runs
                self.failed += 1
                print("FAIL {}: {}: {}".format(name, type(e).__name__, e))
                if not isinstance(e, AssertionError):
                    traceback.print_exc(file=sys.stdout)
            else:
                self.passed += 1
                print("ok   {}".format(name))
            sys.stdout.flush()


def main():
    url = os.environ.get("TOCSIN_URL", "").rstrip("/")
    key = os.environ.get("TOCSIN_INTEGRATION_KEY", "")
    if not url or not key:
        print("test_sdk.py: set TOCSIN_URL and TOCSIN_INTEGRATION_KEY (tests/opsgenie-sdk/run.sh does)", file=sys.stderr)
        print("0 passed, 1 failed")
        return 2
    s = Scenario(url, key)
    print("opsgenie-sdk {} against {}".format(
        getattr(opsgenie_sdk, "__version__", "?"), url))
    s.run_all()
    line = "{} passed, {} failed".format(s.passed, s.failed)
    if s.skipped:
        line += ", {} skipped".format(s.skipped)
    print(line)
    return 0 if s.failed == 0 and s.skipped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
