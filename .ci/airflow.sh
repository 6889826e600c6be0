#!/usr/bin/env bash
# The Airflow integration against a real Airflow, in a virtual environment of its own:
# tests_airflow/ with pytest, then the example DAG under `airflow dags test` against
# the simulator. Usage: .ci/airflow.sh [AIRFLOW_VERSION...]
# (default: 3.3.2, the newest, and 2.10.5, the oldest supported; Python 3.11)
set -euo pipefail
start=$SECONDS
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null; then
    python3 -m venv .venv-uv
    .venv-uv/bin/pip install -q uv
    PATH="$PWD/.venv-uv/bin:$PATH"
fi

sim_pid="" home=""
cleanup() {  # the simulator of the current version, and its Airflow home
    if [ -n "$sim_pid" ]; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
    [ -n "$home" ] && rm -rf "$home"
    sim_pid="" home=""
    unset AIRFLOW_HOME AIRFLOW__CORE__DAGS_FOLDER AIRFLOW_CONN_TOGETHER_DEFAULT
}
trap cleanup EXIT

run_version() {
    local version="$1"
    local venv=".venv-airflow-${version}"
    [ -x "$venv/bin/python" ] || uv venv -q --python python3.11 "$venv"
    uv pip install -q --python "$venv/bin/python" -e '.[airflow]' "apache-airflow==${version}" \
        pytest pytest-asyncio pytest-timeout
    echo "airflow $("$venv/bin/python" -c 'import airflow; print(airflow.__version__)')"

    "$venv/bin/python" -m pytest tests_airflow -q

    # The example DAG, run by the airflow command in a fresh home against a served simulator.
    home="$(mktemp -d)"
    sim_log="$home/simulator.log"
    key="sk-ci-$RANDOM$RANDOM"
    "$venv/bin/python" tests_airflow/serve_simulator.py "$key" >"$sim_log" 2>&1 &
    sim_pid=$!
    for _ in $(seq 100); do
        [ -s "$sim_log" ] && break
        sleep 0.1
    done
    base_url="$(head -n1 "$sim_log")"
    case "$base_url" in http://*) ;; *) echo "the simulator did not start:"; cat "$sim_log"; exit 1 ;; esac

    export AIRFLOW_HOME="$home" AIRFLOW__CORE__LOAD_EXAMPLES=False
    export AIRFLOW__CORE__DAGS_FOLDER="$home/dags" FINETUNE_POLL_INTERVAL=0.5
    export AIRFLOW_CONN_TOGETHER_DEFAULT="{\"conn_type\": \"together\", \"host\": \"$base_url\", \"password\": \"$key\"}"
    mkdir "$home/dags"
    cp examples/airflow_dag.py "$home/dags/"
    "$venv/bin/airflow" db migrate >"$home/migrate.log" 2>&1 || { cat "$home/migrate.log"; exit 1; }
    "$venv/bin/airflow" dags test together_finetune >"$home/dag.log" 2>&1 || { tail -n 60 "$home/dag.log"; exit 1; }
    if grep -q "$key" "$home/dag.log"; then
        echo "the API key appeared in the DAG run's output"
        exit 1
    fi
    grep -E "ft-[0-9a-f-]+ completed: " "$home/dag.log" | tail -n1
    grep -qi "state=success" "$home/dag.log" || { tail -n 60 "$home/dag.log"; exit 1; }
    echo "airflow dags test together_finetune: success"
    cleanup
    echo "airflow ${version}: done after $((SECONDS - start)) s"
}

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.3.2 2.10.5)
for version in "${versions[@]}"; do
    run_version "$version"
done
echo ".ci/airflow.sh took $((SECONDS - start)) s"
