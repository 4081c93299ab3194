#!/bin/sh
# Entrypoint of the schedsweep image: warn about a too-small /dev/shm (NCCL and Ray's object store live
# there), then run the command given (ray start ..., sweep run ..., mlflow server ...).
set -eu
shm_kib=$(df -k /dev/shm 2>/dev/null | awk 'NR == 2 {print $2}')
if [ -n "${shm_kib:-}" ] && [ "$shm_kib" -lt 1048576 ]; then
    echo "schedsweep: /dev/shm is only $((shm_kib / 1024)) MiB; NCCL and Ray's object store need GBs" \
         "(docker run --shm-size=32g, compose shm_size, or an emptyDir with medium: Memory on /dev/shm)" >&2
fi
exec "$@"
