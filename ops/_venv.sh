# Sourced by ops/up and ops/test: create .venv with Python >= 3.11 and install Ordo with $ORDO_EXTRAS.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
python=""
for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; raise SystemExit(sys.version_info < (3, 11))' 2>/dev/null; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  echo "error: Ordo needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.ordo-installed-${ORDO_EXTRAS:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  spec="."
  [ -n "${ORDO_EXTRAS:-}" ] && spec=".[${ORDO_EXTRAS}]"
  .venv/bin/python -m pip install --quiet -e "$spec" >&2
  touch "$stamp"
fi
