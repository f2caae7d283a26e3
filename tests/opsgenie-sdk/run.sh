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

name=opsgenie-sdk
skip_hint="install Python 3 with venv and pip to run the SDK test"
source "$(dirname "$0")/../lib.sh"
runner_init "$@"
# The SDK's last release; pinned so a new release cannot change what this test proves
# without a commit saying so.
python_venv "$root/target/opsgenie-sdk-venv" "opsgenie-sdk==2.1.5"
runner_workdir
start_server

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
