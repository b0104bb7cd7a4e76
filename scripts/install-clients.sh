#!/usr/bin/env bash
# Installs the official Element clients (solidfire-sdk-python and sfcli) into the given
# Python environment without enum34, which shadows the standard `enum` on Python 3.
# See ../shared/element-api/CLIENTS.md for why each step is here.
set -euo pipefail
PY="${1:-python3}"
"$PY" -m pip install -q --no-deps solidfire-sdk-python==12.3.0.203 solidfire-cli==1.7.0.154
"$PY" -m pip install -q requests==2.34.2 future==1.0.0 click==8.1.8 jsonpickle==4.1.4 \
    simplejson==4.3.0 'setuptools<81' getpass2==1.0.2 filelock==3.20.0 pycryptodome==3.23.0
# sfcli walks its dependency tree with pkg_resources at start; make the SDK's enum34
# requirement apply only to the Pythons that needed it.
meta=$("$PY" - <<'PYEOF'
import importlib.metadata as md
dist = md.distribution("solidfire-sdk-python")
print(dist._path / "METADATA")  # type: ignore[attr-defined]
PYEOF
)
sed -i -E 's/^Requires-Dist: enum34.*$/Requires-Dist: enum34 (>=1.1.6) ; python_version < "3.4"/' "$meta"
