#!/usr/bin/env bash
# schemathesis (PyPI) against a real `tocsin serve` and its published /openapi.json: every
# operation is called with generated valid and invalid input, with the owner's token, and
# every answer must be a non-5xx, with a status, content type, headers and body that the
# published document allows. The proof that /openapi.json tells clients the truth.
#
#   bash tests/schemathesis/run.sh target/debug/tocsin
#
# It keeps a virtualenv in target/schemathesis-venv (reused across runs), starts the server
# on a free loopback port with a fresh data directory, runs schemathesis with a fixed seed
# and a bounded number of examples per operation (SCHEMATHESIS_MAX_EXAMPLES, default 100;
# about 70 seconds), and always stops the server. Exits with schemathesis's status.
#
# Without python3 (or its venv/pip) it skips with a message, except under CI=true, where a
# missing tool is a failure: CI must never pass by not running the test.
set -euo pipefail

name=schemathesis
skip_hint="install Python 3 with venv and pip to run it"
source "$(dirname "$0")/../lib.sh"
runner_init "$@"
# Pinned: a new release adds checks and changes generation; adopting it is a commit of its own.
venv="$root/target/schemathesis-venv"
python_venv "$venv" "schemathesis==4.32.5"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
seed="${SCHEMATHESIS_SEED:-20261123}"
runner_workdir
# The failed-authentication throttle would answer 429 to the bad credentials schemathesis
# sends on purpose (its ignored_auth check wants to see the 401); it has tests of its own.
start_server --failed-auth-per-minute 1000000
owner="$(tr -d '[:space:]' <"$data/owner-token")"
[[ -n "$owner" ]] || { echo "schemathesis: FAILED: no owner token in $data/owner-token" >&2; exit 1; }

# The checks that hold for any operation whatever its input; `positive_data_acceptance`
# is left out because a body can match its schema and still name a team or role that does
# not exist (a 404 or 422 is then the right answer). The stateful phase chains operations
# (create a team, then read, change and delete it), reaching what random ids cannot.
checks="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,ignored_auth"
# The routes Opsgenie has and Tocsin has not built (saved searches, alert attachments,
# integration actions) answer 501 by design, which not_a_server_error counts as a failure;
# tests/api/alerts.rs holds them to that 501. So does `searchIdentifier` (a saved search) on
# GET /v2/alerts and /v2/alerts/count, which schemathesis.toml allows there.
set +e
# From the scratch directory: schemathesis keeps a cache (.schemathesis/) in the current one.
# One worker: with two, its threads parse Python source at once (hypothesis describes
# strategies with `ast.parse`), and CPython 3.11's AST constructor keeps one recursion count
# for all threads, so a run could fail with "AST constructor recursion depth mismatch"
# (CPython gh-106905), an error of the tool, not of Tocsin.
cd "$work"
"$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$url/openapi.json" \
  --header "Authorization: Bearer $owner" \
  --checks "$checks" \
  --phases examples,coverage,fuzzing,stateful \
  --exclude-path-regex '/saved-searches|/attachments|^/v2/integrations/\{id\}/actions$' \
  --max-examples "$max_examples" \
  --seed "$seed" \
  --workers 1 \
  --request-timeout 30 \
  --generation-database none \
  --no-color \
  --report ndjson --report-dir "$work/report"
status=$?
set -e
if [[ $status -ne 0 ]]; then
  echo "schemathesis: FAILED (exit $status); the server's log (last 100 lines):" >&2
  tail -n 100 "$log" >&2
fi
exit "$status"
