#!/usr/bin/env bash
# Validate template.yaml with `sam validate --lint` (SAM transform + cfn-lint).
# Needs no AWS account: dummy credentials, telemetry off. Installs the SAM CLI
# into the stack's venv ($STATE_DIR/venv, see lib.sh) on first use.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
repo_root="$REPO_ROOT"
venv="$VENV"

if [[ ! -x "${venv}/bin/python" ]]; then
  python3 -m venv "${venv}"
fi
if [[ ! -x "${venv}/bin/sam" ]]; then
  "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check aws-sam-cli==1.170.0
fi

cd "${repo_root}"
AWS_ACCESS_KEY_ID=testing \
AWS_SECRET_ACCESS_KEY=testing \
AWS_SESSION_TOKEN=testing \
AWS_DEFAULT_REGION=us-east-1 \
SAM_CLI_TELEMETRY=0 \
  "${venv}/bin/sam" validate --lint --template template.yaml --region us-east-1
