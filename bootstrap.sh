#!/usr/bin/env bash
# One-command set-up for Picmetric's inference service.
#   ./bootstrap.sh serve   create .venv, convert the models (cached), start Triton and the gateway
#   ./bootstrap.sh test    create .venv, lint, type-check, convert what tests need, run pytest
#   sudo ./bootstrap.sh deploy   GPU host: Docker + NVIDIA toolkit, convert, docker compose up -d
#   (no argument on a host with Docker and an NVIDIA GPU means deploy)
set -euo pipefail

VENV=.venv
PYTHON=${PYTHON:-python3}

say() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Install Debian packages whose command is missing: apt_ensure COMMAND_PATH PACKAGE...
apt_ensure() {
  local probe=$1
  shift
  if [ ! -e "$probe" ] && ! command -v "$probe" >/dev/null 2>&1; then
    say "Installing $* from Debian's packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  fi
}

# Create the virtual environment and (re)install the project when pyproject.toml changed.
ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "Creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.picmetric-installed"
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "Installing Picmetric and its dependencies into $VENV (a few minutes the first time)"
    "$VENV/bin/pip" install --quiet --upgrade pip
    # every set, editable; each image installs only its own (deploy/install.sh)
    "$VENV/bin/pip" install --quiet -e ".[gateway,triton,convert,test]"
    echo "$want" >"$stamp"
  fi
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
}

serve() {
  ensure_venv
  # The options first: --help answers at once, and a wrong option or a taken port stops here,
  # before any package is installed or model converted.
  case " $* " in
    *" -h "* | *" --help "*) exec picmetric serve "$@" ;;
  esac
  picmetric serve --check "$@"
  # bulk jobs' queue: `picmetric serve` starts its own Redis when PICMETRIC_REDIS_URL is unset
  apt_ensure redis-server redis-server
  say "Converting models (cached; --weights ${PICMETRIC_WEIGHTS:-auto})"
  picmetric convert all --weights "${PICMETRIC_WEIGHTS:-auto}"
  say "Starting the service"
  exec picmetric serve "$@"
}

run_tests() {
  ensure_venv
  apt_ensure /usr/lib/postgresql/15/bin/initdb postgresql
  apt_ensure promtool prometheus
  # rate limits shared by gateway processes (tests/gateway/test_rate_limits.py)
  apt_ensure redis-server redis-server
  apt_ensure shellcheck shellcheck
  # a real browser loads /docs offline (tests/gateway/http/test_docs.py)
  apt_ensure chromium chromium
  # the try-it page driven through the system browser's WebDriver (tests/gateway/http/test_page.py)
  apt_ensure /usr/bin/chromedriver chromium-driver
  # the privacy oracle reads every kept upload (tests/gateway/images/test_privacy.py)
  apt_ensure exiftool libimage-exiftool-perl
  say "Linting (ruff) and type-checking (mypy)"
  ruff check .
  mypy
  say "Converting the test models (random weights, seed 0; cached)"
  local scratch
  scratch=$(mktemp -d)
  picmetric convert all --weights random --seed 0 --repository "$scratch"
  rm -rf "$scratch"
  say "Running the test suite"
  pytest "$@"
}

TRITON_IMAGE=nvcr.io/nvidia/tritonserver:25.11-py3
GATEWAY_URL=http://localhost:8080

install_docker() {
  if command -v docker >/dev/null && docker compose version >/dev/null 2>&1 \
    && docker info >/dev/null 2>&1; then
    return
  fi
  say "Installing Docker Engine and the compose plugin (Docker's apt repository)"
  apt-get update -qq
  apt-get install -y -qq ca-certificates curl gnupg
  local distro codename
  # shellcheck source=/dev/null
  distro=$(. /etc/os-release && echo "$ID")
  # shellcheck source=/dev/null
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  install -m 0755 -d /etc/apt/keyrings
  curl -fsSL "https://download.docker.com/linux/$distro/gpg" -o /etc/apt/keyrings/docker.asc
  echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc]" \
    "https://download.docker.com/linux/$distro $codename stable" \
    >/etc/apt/sources.list.d/docker.list
  apt-get update -qq
  apt-get install -y -qq docker-ce docker-ce-cli containerd.io docker-compose-plugin
  systemctl enable --now docker
}

install_nvidia_toolkit() {
  if command -v nvidia-ctk >/dev/null; then
    return
  fi
  say "Installing the NVIDIA container toolkit"
  curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey \
    | gpg --dearmor --yes -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
  curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
    | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#' \
      >/etc/apt/sources.list.d/nvidia-container-toolkit.list
  apt-get update -qq
  apt-get install -y -qq nvidia-container-toolkit
  nvidia-ctk runtime configure --runtime=docker
  systemctl restart docker
}

random_secret() { head -c 24 /dev/urandom | base64 | tr -d '/+=\n'; }

# The value of NAME in .env (the last one, unquoted as ensure_env_file writes it).
env_value() { sed -n "s/^$1=//p" .env | tail -n 1; }

# Secrets in .env (mode 600), each made once: passwords for Postgres and Grafana, the key that
# locks Triton's admin API, and an API key for the gateway, shown once when it is made. A name
# already in .env is kept, even empty (PICMETRIC_API_KEYS= with PICMETRIC_ALLOW_ANONYMOUS=true).
ensure_env_file() {
  (umask 077 && touch .env)
  chmod 600 .env
  local name key
  for name in POSTGRES_PASSWORD POSTGRES_APP_PASSWORD REDIS_PASSWORD GRAFANA_ADMIN_PASSWORD PICMETRIC_TRITON_ADMIN_KEY; do
    if ! grep -q "^$name=" .env; then
      echo "$name=$(random_secret)" >>.env
    fi
  done
  if ! grep -q "^PICMETRIC_ALLOWED_HOSTS=" .env; then
    # The gateway refuses any Host name but localhost's and these (DNS rebinding).
    local hosts=${PICMETRIC_ALLOWED_HOSTS:-$(hostname -f 2>/dev/null || hostname)}
    echo "PICMETRIC_ALLOWED_HOSTS=$hosts" >>.env
    say "The gateway answers to localhost and to: $hosts (PICMETRIC_ALLOWED_HOSTS in .env;"
    echo "add the names clients use, comma-separated, then docker compose up -d gateway)."
  fi
  if ! grep -q "^PICMETRIC_API_KEYS=" .env; then
    key=$(random_secret)
    echo "PICMETRIC_API_KEYS=$key" >>.env
    say "Made an API key; it is shown only now (kept in .env as PICMETRIC_API_KEYS):"
    echo "    $key"
    echo "Clients send it in the X-API-Key header. More keys: comma-separated in .env, then"
    echo "docker compose up -d gateway."
  fi
}

# Reads `docker compose ps --all` lines "service|state|health|exit code" and prints the services
# that failed: not running and healthy, except a one-shot that exited 0.
failed_services() {
  local service state health code
  while IFS='|' read -r service state health code; do
    case "$state|$health|$code" in
      "running|healthy|"* | "running||"* | "exited||0") ;;
      *) echo "$service" ;;
    esac
  done
}

# Which containers failed, and the last lines of their logs.
report_failure() {
  echo >&2
  echo "Picmetric is not working. The containers:" >&2
  docker compose ps --all >&2 || true
  local service
  for service in $(docker compose ps --all --format '{{.Service}}|{{.State}}|{{.Health}}|{{.ExitCode}}' \
    | failed_services); do
    echo >&2
    echo "==> $service failed; the last lines of its log (docker compose logs $service):" >&2
    docker compose logs --no-color --tail 40 "$service" >&2 || true
  done
}

wait_ready() {
  local i
  for i in $(seq 1 120); do
    if curl -fsS "$GATEWAY_URL/readyz" >/dev/null 2>&1; then
      return 0
    fi
    [ "$i" -eq 1 ] && echo "Waiting for the gateway and every model to be ready..."
    sleep 5
  done
  echo "The service was not ready after 10 minutes." >&2
  return 1
}

# One photo of the repository through the gateway from this host, with the first API key of
# .env; prints the analysis' summary (picmetric analyze's, run in the gateway's image).
# Up to 10 minutes: with PICMETRIC_TENSORRT=1 a first request may build TensorRT engines.
SAMPLE_PHOTO=docs/try-it-page.png
prove_analysis() {
  local key answer
  local -a auth=()
  key=$(env_value PICMETRIC_API_KEYS)
  key=${key%%,*}
  if [ -n "$key" ]; then
    auth=(-H "X-API-Key: $key")
  fi
  say "Analysing $SAMPLE_PHOTO through $GATEWAY_URL/v1/analyze"
  answer=$(mktemp)
  if ! curl -sS --fail-with-body --max-time 600 "${auth[@]}" -F "file=@$SAMPLE_PHOTO" \
    "$GATEWAY_URL/v1/analyze" -o "$answer"; then
    echo "The gateway did not analyse the photo; it answered:" >&2
    cat "$answer" >&2
    rm -f "$answer"
    return 1
  fi
  docker compose exec -T gateway python -c \
    'import json, sys; from picmetric.client import summary; print("\n".join(summary(json.load(sys.stdin))))' \
    <"$answer"
  rm -f "$answer"
}

# The gateway's runtime database role (picmetric_app, deploy/postgres/init-app-role.sh): PostgreSQL
# makes it on a new data volume; a volume from before it existed gets it here, once.
ensure_app_role() {
  docker compose up -d --wait postgres
  # shellcheck disable=SC2016 # expanded inside the container
  docker compose exec -T postgres sh -c \
    'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '"'picmetric_app'"'" | grep -q 1 || sh /docker-entrypoint-initdb.d/10-app-role.sh'
}

deploy() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "deploy installs system packages: run it as root (sudo ./bootstrap.sh deploy)" >&2
    exit 1
  fi
  install_docker
  install_nvidia_toolkit
  say "Checking the GPU from inside a container"
  docker run --rm --gpus all "$TRITON_IMAGE" nvidia-smi
  ensure_env_file
  say "Converting the models (cached in the picmetric-cache volume)"
  docker compose --profile convert build convert
  docker compose --profile convert run --rm convert
  if [ "${PICMETRIC_TENSORRT:-0}" = 1 ]; then
    say "Switching the ONNX models to TensorRT FP16 (engines cached in the trt-cache volume)"
    docker compose --profile convert run --rm convert picmetric tensorrt on --repository /app/model_repository
  fi
  say "Starting PostgreSQL; the gateway's database role, once"
  ensure_app_role
  say "Starting Triton, the gateway, PostgreSQL, Prometheus and Grafana"
  docker compose up -d --build
  if ! wait_ready || ! prove_analysis; then
    report_failure
    exit 1
  fi
  echo
  echo "Picmetric is up: $GATEWAY_URL (API docs at $GATEWAY_URL/docs); clients send an API key"
  echo "  from .env (PICMETRIC_API_KEYS) in the X-API-Key header."
  echo "Grafana: http://localhost:3000 (on the host; admin password in .env), Prometheus: http://localhost:9090"
  echo "Next: docker compose ps; docker compose logs -f gateway triton; the models' weights:"
  echo "  curl -s -H 'X-API-Key: ...' $GATEWAY_URL/v1/models (README.md, Deployment)"
}

has_gpu_docker_host() {
  command -v docker >/dev/null && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1
}

main() {
  cd "$(dirname "$0")"
  case "${1:-}" in
    serve) shift; serve "$@" ;;
    test) shift; run_tests "$@" ;;
    deploy) shift; deploy ;;
    "")
      if has_gpu_docker_host; then
        deploy
      else
        echo "usage: $0 serve|test|deploy (no argument deploys on a host with Docker and an NVIDIA GPU)" >&2
        exit 2
      fi
      ;;
    *)
      echo "usage: $0 serve|test|deploy [args]" >&2
      exit 2
      ;;
  esac
}

# Sourced (tests/deploy/test_shell_scripts.py calls its functions), it only defines them.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
