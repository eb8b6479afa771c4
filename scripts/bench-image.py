#!/usr/bin/env python3
"""Writes a deterministic OCI image layout for scripts/bench.sh: one linux/amd64 image (tag
`img`) of about TOTAL_MIB MiB in 8 layers of unequal size, each a real gzip (level 1) of a
one-file tar of seeded pseudo-random bytes, so the layers are valid, incompressible and their
config's diff_ids are right. Streams: memory stays small whatever the size.

    scripts/bench-image.py OUT_DIR TOTAL_MIB
"""
import hashlib
import json
import os
import random
import sys
import tarfile
import zlib

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
WEIGHTS = [24, 20, 16, 12, 10, 8, 6, 4]  # percent of the total, one per layer
MIB = 1 << 20

out, total_mib = sys.argv[1], int(sys.argv[2])
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)


def put(data: bytes) -> dict:
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{d}", "size": len(data)}


def layer(i: int, size: int) -> tuple[dict, str]:
    """gzip(tar(layer-i/data.bin of `size` random bytes)): (descriptor, diff_id)."""
    rng = random.Random(i)
    tmp = os.path.join(blobs, f".tmp-{i}")
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing, mtime 0: deterministic
    diff, comp, n = hashlib.sha256(), hashlib.sha256(), 0
    with open(tmp, "wb") as f:

        def emit(raw: bytes) -> None:
            nonlocal n
            diff.update(raw)
            c = gz.compress(raw)
            comp.update(c)
            f.write(c)
            n += len(c)

        ti = tarfile.TarInfo(f"layer-{i}/data.bin")
        ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = size, 0, 0o644, "root", "root"
        emit(ti.tobuf(format=tarfile.USTAR_FORMAT))
        left = size
        while left:
            k = min(left, 8 * MIB)
            emit(rng.randbytes(k))
            left -= k
        emit(b"\0" * (-size % 512) + b"\0" * 1024)  # pad, then the end-of-archive blocks
        c = gz.flush()
        comp.update(c)
        f.write(c)
        n += len(c)
    d = comp.hexdigest()
    os.rename(tmp, os.path.join(blobs, d))
    desc = {"mediaType": OCI_LAYER_GZ, "digest": f"sha256:{d}", "size": n}
    return desc, f"sha256:{diff.hexdigest()}"


layers, diff_ids = [], []
for i, w in enumerate(WEIGHTS):
    desc, diff_id = layer(i, total_mib * MIB * w // 100)
    layers.append(desc)
    diff_ids.append(diff_id)
    print(f"layer {i}: {desc['size']} bytes {desc['digest']}", file=sys.stderr)

config = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Entrypoint": ["/layer-0/data.bin"]},
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
}
cfg = put(json.dumps(config, separators=(",", ":")).encode())
manifest = {
    "schemaVersion": 2,
    "mediaType": OCI_MANIFEST,
    "config": {"mediaType": OCI_CONFIG, **cfg},
    "layers": layers,
}
top = put(json.dumps(manifest, separators=(",", ":")).encode())
index = {
    "schemaVersion": 2,
    "manifests": [
        {
            "mediaType": OCI_MANIFEST,
            **top,
            "annotations": {"org.opencontainers.image.ref.name": "img"},
        }
    ],
}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f, separators=(",", ":"))
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
print(top["digest"])
