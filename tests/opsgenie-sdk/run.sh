#!/usr/bin/env bash
# The official Opsgenie Python SDK (`opsgenie-sdk` from PyPI), unmodified but for its host,
# against a real `tocsin serve`: the proof that Opsgenie users can move by changing only
# their base URL. Builds nothing: give it the `tocsin` binary.
#
#   bash tests/opsgenie-sdk/run.sh target/debug/tocsin
#
# It keeps a virtualenv in target/opsgenie-sdk-venv (reused across runs; `cargo clean`
# removes it), starts the server on a free loopback port with a fresh data directory,
# creates an API integration with the owner's token, runs test_sdk.py with that
# integration's key, and always stops the server. Exits with test_sdk.py's status.
#
# Without python3 (or its venv/pip) it skips with a message, except under CI=true, where a
# missing tool is a failure: CI must never pass by not running the test.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bash tests/opsgenie-sdk/run.sh PATH/TO/tocsin" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$1"
[[ "$bin" == /* ]] || bin="$PWD/$bin"
if [[ ! -x "$bin" ]]; then
  echo "opsgenie-sdk: $1 is not an executable tocsin binary (build it with cargo build -p tocsin)" >&2
  exit 2
fi

# The SDK's last release; pinned so a new release cannot change what this test proves
# without a commit saying so.
sdk_requirement="opsgenie-sdk==2.1.5"
venv="$root/target/opsgenie-sdk-venv"

# A missing tool: a skip on a developer's machine, a failure in CI.
unavailable() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "opsgenie-sdk: FAILED: $1 (CI=true: this test must run in CI)" >&2
    exit 1
  fi
  echo "opsgenie-sdk: SKIPPED: $1; install Python 3 with venv and pip to run the SDK test" >&2
  exit 0
}

command -v python3 >/dev/null 2>&1 || unavailable "python3 is not installed"

# Reuse the venv only if its interpreter still works (a Python upgrade breaks old venvs).
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$venv"
  mkdir -p "$root/target"
  python3 -m venv "$venv" || { rm -rf "$venv"; unavailable "python3 -m venv failed (is the venv module installed?)"; }
fi
py="$venv/bin/python"
"$py" -m pip --version >/dev/null 2>&1 || unavailable "pip is not available in the venv $venv"
# Fails loudly: a registry or network problem is not a reason to report success.
if ! "$py" -m pip install --disable-pip-version-check --quiet "$sdk_requirement"; then
  echo "opsgenie-sdk: FAILED: pip install $sdk_requirement into $venv failed" >&2
  exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-opsgenie-sdk.XXXXXX")"
server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    # SIGTERM is the graceful path; give it 10 s, then make sure.
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

# Settings that a developer's environment might carry must not point this server at
# another database, config or secret: this run is self-contained.
unset TOCSIN_CONFIG TOCSIN_DATABASE_URL TOCSIN_PUBLIC_URL TOCSIN_REGIONS TOCSIN_SECRET_FILE \
  TOCSIN_LISTEN TOCSIN_DATA_DIR

# Starts the server on a free port; a port taken between choosing and binding (another
# process won the race) makes the server exit, and then another port is tried.
url=""
for attempt in 1 2 3; do
  port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  data="$work/data$attempt"
  log="$work/server$attempt.log"
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" >"$log" 2>&1 &
  server_pid=$!
  # Waits for /healthz (30 s at most), or for the server to exit.
  if "$py" - "http://127.0.0.1:$port" "$server_pid" <<'EOF'
import os, sys, time, urllib.request
base, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)  # the server exited
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
  then
    url="http://127.0.0.1:$port"
    break
  fi
  echo "opsgenie-sdk: the server did not become healthy on port $port (attempt $attempt); its log:" >&2
  cat "$log" >&2
  stop_server
done
if [[ -z "$url" ]]; then
  echo "opsgenie-sdk: FAILED: could not start $bin serve" >&2
  exit 1
fi

# The owner's first token, written by the first start; with it, an API integration whose
# key the SDK uses, as an Opsgenie user uses an API integration's key.
integration_key="$("$py" - "$url" "$data/owner-token" <<'EOF'
import json, sys, time, urllib.request, urllib.error
base, token_file = sys.argv[1], sys.argv[2]
for _ in range(100):
    try:
        owner = open(token_file).read().strip()
        if owner:
            break
    except OSError:
        pass
    time.sleep(0.1)
else:
    sys.exit("opsgenie-sdk: no owner token at " + token_file)
req = urllib.request.Request(
    base + "/v1/integrations",
    data=json.dumps({"name": "python-sdk"}).encode(),
    headers={"Authorization": "Bearer " + owner, "Content-Type": "application/json"},
    method="POST",
)
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        body = json.load(r)
except urllib.error.HTTPError as e:
    sys.exit("opsgenie-sdk: POST /v1/integrations answered {}: {}".format(e.code, e.read().decode(errors="replace")))
token = body.get("token")
if not token:
    sys.exit("opsgenie-sdk: POST /v1/integrations returned no token: {}".format(body))
print(token)
EOF
)"

set +e
TOCSIN_URL="$url" TOCSIN_INTEGRATION_KEY="$integration_key" "$py" "$here/test_sdk.py"
status=$?
set -e
if [[ $status -ne 0 ]]; then
  echo "opsgenie-sdk: test_sdk.py failed (exit $status); the server's log:" >&2
  tail -n 200 "$log" >&2
fi
exit "$status"
