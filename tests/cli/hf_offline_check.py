"""Checks a Hugging Face cache with the real huggingface_hub, offline.

Driven by tests/cli/hfcache.rs with HF_HUB_OFFLINE=1 and HF_HUB_CACHE set. Usage:

    python hf_offline_check.py etags FILE...   # prints the git blob SHA-1 of each file, one a line
    python hf_offline_check.py check SPEC.json # exits non-zero with a message on the first failure

SPEC: {"loads": [{"repo_id", "repo_type", "revision", "commit", "files": {path: sha256 hex}}],
       "scan": [{"repo_id", "repo_type", "revisions": {commit: [ref, ...]}}]}
Each load: snapshot_download(local_files_only=True) must return snapshots/<commit>, and
hf_hub_download of each file must return snapshots/<commit>/<path> holding those bytes.
scan_cache_dir() must report no warnings and exactly the listed repos, revisions and refs, and
CACHEDIR.TAG must hold the client's own text.
"""

import hashlib
import json
import os
import sys


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fail(msg: str) -> None:
    print(msg, file=sys.stderr)
    sys.exit(1)


def check(spec: dict) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1", "run with HF_HUB_OFFLINE=1"
    from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download
    from huggingface_hub.file_download import repo_folder_name

    cache = os.environ["HF_HUB_CACHE"]
    for load in spec.get("loads", []):
        repo_id, repo_type, rev = load["repo_id"], load["repo_type"], load["revision"]
        folder = os.path.join(cache, repo_folder_name(repo_id=repo_id, repo_type=repo_type))
        want = os.path.join(folder, "snapshots", load["commit"])
        got = snapshot_download(repo_id, repo_type=repo_type, revision=rev, local_files_only=True)
        if os.path.realpath(got) != os.path.realpath(want):
            fail(f"snapshot_download({repo_id}@{rev}) -> {got}, expected {want}")
        for path, sha in load["files"].items():
            f = hf_hub_download(repo_id, path, repo_type=repo_type, revision=rev)
            if os.path.abspath(f) != os.path.abspath(os.path.join(want, path)):
                fail(f"hf_hub_download({repo_id}@{rev}, {path}) -> {f}, expected under {want}")
            with open(f, "rb") as fh:
                actual = hashlib.sha256(fh.read()).hexdigest()
            if actual != sha:
                fail(f"{f}: sha256 {actual}, expected {sha}")
    from huggingface_hub._local_folder import CACHEDIR_TAG_CONTENT

    with open(os.path.join(cache, "CACHEDIR.TAG"), "rb") as fh:
        if fh.read() != CACHEDIR_TAG_CONTENT.encode():
            fail("CACHEDIR.TAG differs from huggingface_hub's")
    info = scan_cache_dir(cache)
    if info.warnings:
        fail(f"scan_cache_dir warnings: {[str(w) for w in info.warnings]}")
    found = {
        (r.repo_type, r.repo_id): {rev.commit_hash: sorted(rev.refs) for rev in r.revisions}
        for r in info.repos
    }
    expected = {
        (r["repo_type"], r["repo_id"]): {c: sorted(refs) for c, refs in r["revisions"].items()}
        for r in spec.get("scan", [])
    }
    if found != expected:
        fail(f"scan_cache_dir found {found}, expected {expected}")
    print(json.dumps({"repos": len(found), "size_on_disk": info.size_on_disk}))


def main() -> None:
    if sys.argv[1] == "etags":
        for p in sys.argv[2:]:
            with open(p, "rb") as fh:
                print(git_blob_sha1(fh.read()))
    elif sys.argv[1] == "check":
        with open(sys.argv[2]) as fh:
            check(json.load(fh))
    else:
        fail(f"unknown command {sys.argv[1]}")


if __name__ == "__main__":
    main()
