# Source this on the GPU machine (the workplace's H200 image): installs the carried wheels (.whl/) and hat
# itself without network, makes ../shared point at the carried shared/ copy, and a `python` wrapper.
export PYTHONUNBUFFERED=1 HAT_NO_PROGRESS=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/tmp/hat-setup.log 2>&1 || { cat /tmp/hat-setup.log; return 1; }
mkdir -p /tmp/bin
# A symlink to a venv's python loses the venv; a wrapper keeps it.
printf '#!/bin/sh\nexec python3 "$@"\n' > /tmp/bin/python && chmod +x /tmp/bin/python
export PATH=/tmp/bin:$PATH
[ -e ../shared ] || ln -sfn "$PWD/shared" ../shared
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
