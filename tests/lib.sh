# Shared by the runners tests/*/run.sh, which test a built `tocsin` binary from outside (the
# Opsgenie SDK, the web console in a browser, schemathesis): argument checks, the skip-or-fail
# rule for missing tools, a Python virtualenv, and one server on a fresh data directory that
# is always stopped. Source it after setting `name` (the runner's name, for messages) and
# optionally `skip_hint` (what to install to run it).

# Checks the one argument, the `tocsin` binary; sets `here`, `root` and `bin`.
runner_init() {
  if [[ $# -ne 1 ]]; then
    echo "usage: bash tests/$name/run.sh PATH/TO/tocsin" >&2
    exit 2
  fi
  here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
  root="$(cd "$here/../.." && pwd)"
  bin="$1"
  [[ "$bin" == /* ]] || bin="$PWD/$bin"
  if [[ ! -x "$bin" ]]; then
    echo "$name: $1 is not an executable tocsin binary (build it with cargo build -p tocsin)" >&2
    exit 2
  fi
}

# A missing tool: a skip on a developer's machine, a failure under CI=true (CI must never
# pass by not running a test).
unavailable() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "$name: FAILED: $1 (CI=true: this test must run in CI)" >&2
    exit 1
  fi
  echo "$name: SKIPPED: $1${skip_hint:+; $skip_hint}" >&2
  exit 0
}

# A virtualenv at $1 holding the pinned requirement $2 (installed when missing, loudly
# failing when the registry cannot be reached); sets `py`.
python_venv() {
  local venv=$1 requirement=$2
  command -v python3 >/dev/null 2>&1 || unavailable "python3 is not installed"
  # Reuse the venv only if its interpreter still works (a Python upgrade breaks old venvs).
  if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" || { rm -rf "$venv"; unavailable "python3 -m venv failed (is the venv module installed?)"; }
  fi
  py="$venv/bin/python"
  "$py" -m pip --version >/dev/null 2>&1 || unavailable "pip is not available in the venv $venv"
  local package=${requirement%%==*} version=${requirement#*==}
  if [[ "$("$py" -m pip show "$package" 2>/dev/null | sed -n 's/^Version: //p')" != "$version" ]]; then
    if ! "$py" -m pip install --disable-pip-version-check --quiet "$requirement"; then
      echo "$name: FAILED: pip install $requirement into $venv failed" >&2
      exit 1
    fi
  fi
}

# A scratch directory (`work`) and the server's stop, both undone at exit.
runner_workdir() {
  work="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-$name.XXXXXX")"
  server_pid=""
  trap 'stop_server; rm -rf "$work"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # This run is self-contained: settings from a developer's environment must not point the
  # server at another database, config or secret.
  unset TOCSIN_CONFIG TOCSIN_DATABASE_URL TOCSIN_PUBLIC_URL TOCSIN_REGIONS TOCSIN_SECRET_FILE \
    TOCSIN_LISTEN TOCSIN_DATA_DIR
}

# SIGTERM (the graceful path) with 10 s to finish, then SIGKILL.
stop_server() {
  if [[ -n "${server_pid:-}" ]] && kill -0 "$server_pid" 2>/dev/null; then
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

# Does /healthz on 127.0.0.1:$1 answer 200? (bash's /dev/tcp: no client tool needed)
healthy() {
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  local status=""
  IFS= read -r -t 2 status <&3 || true
  exec 3<&- 3>&-
  [[ "$status" == "HTTP/1.1 200"* ]]
}

# `tocsin serve` with the extra arguments given, on a free loopback port and a fresh data
# directory, waiting (30 s at most) until it is healthy; a port taken between choosing and
# binding makes the server exit, and another is tried. Sets `url`, `data`, `log`, `server_pid`.
start_server() {
  command -v python3 >/dev/null 2>&1 || unavailable "python3 is not installed (used to find a free port)"
  url=""
  local attempt port
  for attempt in 1 2 3; do
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    data="$work/data$attempt"
    log="$work/server$attempt.log"
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" "$@" >"$log" 2>&1 &
    server_pid=$!
    for _ in $(seq 300); do
      kill -0 "$server_pid" 2>/dev/null || break
      if healthy "$port" 2>/dev/null; then
        url="http://127.0.0.1:$port"
        break
      fi
      sleep 0.1
    done
    if [[ -n "$url" ]]; then
      # The first start writes the owner's first token; wait for it too.
      for _ in $(seq 100); do
        [[ -s "$data/owner-token" ]] && return 0
        sleep 0.1
      done
    fi
    echo "$name: the server did not become healthy on port $port (attempt $attempt); its log:" >&2
    cat "$log" >&2
    stop_server
    url=""
  done
  echo "$name: FAILED: could not start $bin serve" >&2
  exit 1
}
