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

if [[ $# -ne 1 ]]; then
  echo "usage: bash tests/schemathesis/run.sh PATH/TO/tocsin" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$1"
[[ "$bin" == /* ]] || bin="$PWD/$bin"
if [[ ! -x "$bin" ]]; then
  echo "schemathesis: $1 is not an executable tocsin binary (build it with cargo build -p tocsin)" >&2
  exit 2
fi

# Pinned: a new release adds checks and changes generation; adopting it is a commit of its own.
requirement="schemathesis==4.32.5"
venv="$root/target/schemathesis-venv"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
seed="${SCHEMATHESIS_SEED:-20261123}"

unavailable() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "schemathesis: FAILED: $1 (CI=true: this test must run in CI)" >&2
    exit 1
  fi
  echo "schemathesis: SKIPPED: $1; install Python 3 with venv and pip to run it" >&2
  exit 0
}

command -v python3 >/dev/null 2>&1 || unavailable "python3 is not installed"
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$venv"
  mkdir -p "$root/target"
  python3 -m venv "$venv" || { rm -rf "$venv"; unavailable "python3 -m venv failed (is the venv module installed?)"; }
fi
py="$venv/bin/python"
"$py" -m pip --version >/dev/null 2>&1 || unavailable "pip is not available in the venv $venv"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "${requirement#*==}"; then
  if ! "$py" -m pip install --disable-pip-version-check --quiet "$requirement"; then
    echo "schemathesis: FAILED: pip install $requirement into $venv failed" >&2
    exit 1
  fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-schemathesis.XXXXXX")"
server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

unset TOCSIN_CONFIG TOCSIN_DATABASE_URL TOCSIN_PUBLIC_URL TOCSIN_REGIONS TOCSIN_SECRET_FILE \
  TOCSIN_LISTEN TOCSIN_DATA_DIR

url=""
for attempt in 1 2 3; do
  port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  data="$work/data$attempt"
  log="$work/server$attempt.log"
  # The failed-authentication throttle would answer 429 to the bad credentials schemathesis
  # sends on purpose (its ignored_auth check wants to see the 401); it has tests of its own.
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --failed-auth-per-minute 1000000 \
    >"$log" 2>&1 &
  server_pid=$!
  if "$py" - "http://127.0.0.1:$port" "$server_pid" <<'PYEOF'
import os, sys, time, urllib.request
base, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PYEOF
  then
    url="http://127.0.0.1:$port"
    break
  fi
  echo "schemathesis: the server did not become healthy on port $port (attempt $attempt); its log:" >&2
  cat "$log" >&2
  stop_server
done
if [[ -z "$url" ]]; then
  echo "schemathesis: FAILED: could not start $bin serve" >&2
  exit 1
fi
for _ in $(seq 100); do
  [[ -s "$data/owner-token" ]] && break
  sleep 0.1
done
owner="$(tr -d '[:space:]' <"$data/owner-token")"
[[ -n "$owner" ]] || { echo "schemathesis: FAILED: no owner token in $data/owner-token" >&2; exit 1; }

# The checks that hold for any operation whatever its input; `positive_data_acceptance`
# is left out because a body can match its schema and still name a team or role that does
# not exist (a 404 or 422 is then the right answer). The stateful phase chains operations
# (create a team, then read, change and delete it), reaching what random ids cannot.
checks="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,ignored_auth"
set +e
# From the scratch directory: schemathesis keeps a cache (.schemathesis/) in the current one.
cd "$work"
"$venv/bin/schemathesis" run "$url/openapi.json" \
  --header "Authorization: Bearer $owner" \
  --checks "$checks" \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$max_examples" \
  --seed "$seed" \
  --workers 2 \
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
