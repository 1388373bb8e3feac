#!/usr/bin/env python3
"""Assembles posthaste's OCI image layout, byte for byte the same from the same inputs.

Called by deploy/image/build, which gathers the inputs; not meant to be run by hand. Inputs:
the tarball of the runtime packages (mmdebstrap --variant=extract --format=tar), the posthaste
binary, the packages' dpkg records, and the image settings as a JSON file. Output: an OCI image
layout directory (blobs/sha256/..., index.json, oci-layout) holding one single-layer image, and
optionally an OCI archive (that directory as a tar) for `podman load` / `skopeo copy`.

Why not buildah or umoci: each stamps the current time or the builder's file owners somewhere
(history, layer headers), and working around that costs more than writing the two small JSON
documents and the one tar below. Every header here is set explicitly: names sorted, owners
numeric, one timestamp (SOURCE_DATE_EPOCH), no atime/ctime, gzip without a name or time.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

# What is kept from the extracted packages: shared objects and the dynamic loader, and each
# package's copyright file. gconv (iconv modules, 8 MB) is never loaded by posthaste; the rest
# (/etc/apt, /var/lib/dpkg, /dev, docs, changelogs) is the extractor's scaffolding.
KEEP_PREFIXES = ("lib/", "lib64/", "usr/lib/")
DROP_PREFIXES = ("usr/lib/x86_64-linux-gnu/gconv/",)


def keep_package_member(path):
    if path.startswith(DROP_PREFIXES) or path.rstrip("/") + "/" in DROP_PREFIXES:
        return False
    if path.startswith(KEEP_PREFIXES):
        return True
    parts = path.split("/")
    # usr/share/doc/<pkg>/copyright, or usr/share/doc/<pkg> itself when it is a symlink to
    # another package's doc directory (libstdc++6 -> gcc-12-base).
    return parts[:3] == ["usr", "share", "doc"] and (
        len(parts) == 4 or (len(parts) == 5 and parts[4] == "copyright"))


def json_bytes(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Layer:
    """The image's filesystem: entries by path, written sorted with normalised headers."""

    def __init__(self, mtime):
        self.mtime = mtime
        self.entries = {}  # path -> (TarInfo, bytes or None)

    def _add(self, info, data=None):
        info.mtime = self.mtime
        info.uname = info.gname = ""
        info.pax_headers = {}
        self.entries[info.name] = (info, data)
        # Every parent directory gets an explicit entry (root-owned 0755 unless given).
        parent = os.path.dirname(info.name)
        while parent and parent not in self.entries:
            self.add_dir(parent)
            parent = os.path.dirname(parent)

    def add_dir(self, path, mode=0o755, uid=0, gid=0):
        info = tarfile.TarInfo(path)
        info.type = tarfile.DIRTYPE
        info.mode, info.uid, info.gid = mode, uid, gid
        self._add(info)

    def add_file(self, path, data, mode=0o644):
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = mode
        self._add(info, data)

    def add_member(self, member, data):
        info = tarfile.TarInfo(member.name)
        info.type = member.type
        info.mode = member.mode
        info.uid = info.gid = 0
        info.linkname = member.linkname
        if member.isreg():
            info.size = len(data)
        self._add(info, data)

    def tar_bytes(self):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                info, data = self.entries[path]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return out.getvalue()


def normalise(name):
    name = name[2:] if name.startswith("./") else name.lstrip("/")
    return name.rstrip("/")


def add_packages(layer, packages_tar):
    hardlinks = []
    by_path = {}
    with tarfile.open(packages_tar) as tar:
        for member in tar:
            path = normalise(member.name)
            by_path[path] = member
            if not path or not keep_package_member(path):
                continue
            member.name = path
            if member.islnk():
                member.linkname = normalise(member.linkname)
                hardlinks.append(member)
                continue
            if member.isdir():
                layer.add_dir(path, member.mode)
            elif member.isreg():
                layer.add_member(member, tar.extractfile(member).read())
            elif member.issym():
                layer.add_member(member, None)
        # A hard link whose target was dropped becomes a copy of it.
        for member in hardlinks:
            if member.linkname in layer.entries:
                layer.add_member(member, None)
            else:
                target = by_path[member.linkname]
                member.type = tarfile.REGTYPE
                layer.add_member(member, tar.extractfile(target).read())


def blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest


def write_archive(layout, archive, mtime):
    """The layout directory as a tar (an OCI archive), with the same normalised headers."""
    files = []
    for root, dirs, names in os.walk(layout):
        for name in dirs + names:
            files.append(os.path.relpath(os.path.join(root, name), layout))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(files):
            full = os.path.join(layout, rel)
            info = tarfile.TarInfo(rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
            if os.path.isdir(full):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                with open(full, "rb") as f:
                    data = f.read()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    with open(archive, "wb") as f:
        f.write(out.getvalue())


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packages_tar", required=True)
    parser.add_argument("--binary", required=True, help="installed as /usr/bin/posthaste")
    parser.add_argument("--dpkg_status_dir", required=True,
                        help="one dpkg status record per package, for image scanners")
    parser.add_argument("--settings", required=True, help="JSON: see deploy/image/build")
    parser.add_argument("--layout", required=True, help="output OCI layout directory (new)")
    parser.add_argument("--oci_archive", help="also write the layout as an OCI archive here")
    args = parser.parse_args()

    with open(args.settings) as f:
        s = json.load(f)
    mtime = int(s["source_date_epoch"])
    uid = int(s["uid"])

    layer = Layer(mtime)
    add_packages(layer, args.packages_tar)
    with open(args.binary, "rb") as f:
        layer.add_file("usr/bin/posthaste", f.read(), 0o755)
    # getpwuid() and tools such as `ps` name the user; nothing here has a password or a shell.
    layer.add_file("etc/passwd", (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"posthaste:x:{uid}:{uid}:posthaste:{s['data_dir']}:/usr/sbin/nologin\n").encode())
    layer.add_file("etc/group", f"root:x:0:\nposthaste:x:{uid}:\n".encode())
    # Scanners (Trivy, Grype) read the distroless-style status.d to know which packages and
    # versions are inside; the packages were extracted, not installed, so dpkg has no status.
    for name in sorted(os.listdir(args.dpkg_status_dir)):
        with open(os.path.join(args.dpkg_status_dir, name), "rb") as f:
            layer.add_file(f"var/lib/dpkg/status.d/{name}", f.read())
    # The data volume's mount point, owned by the server's user so a fresh named volume (which
    # copies the mount point's owner) is writable; certificates are mounted under tls_dir.
    layer.add_dir(s["data_dir"].lstrip("/"), 0o700, uid, uid)
    layer.add_dir(s["tls_dir"].lstrip("/"))
    layer.add_dir("tmp", 0o1777)

    tar = layer.tar_bytes()
    compressed_io = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed_io, mode="wb", compresslevel=9, mtime=0,
                       filename="") as gz:
        gz.write(tar)
    compressed = compressed_io.getvalue()

    os.makedirs(os.path.join(args.layout, "blobs", "sha256"))
    created = s["created"]
    config = {
        "architecture": s["architecture"],
        "os": "linux",
        "created": created,
        "author": "posthaste deploy/image/build",
        "config": {
            "User": f"{uid}:{uid}",
            "Entrypoint": s["entrypoint"],
            "Cmd": s["cmd"],
            "Env": s["env"],
            "ExposedPorts": {p: {} for p in s["exposed_ports"]},
            "Volumes": {s["data_dir"]: {}},
            "WorkingDir": "/",
            "StopSignal": "SIGTERM",
            "Labels": s["labels"],
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "history": [{"created": created, "created_by": "deploy/image/build",
                     "comment": "posthaste and its runtime libraries from Debian packages"}],
    }
    config_bytes = json_bytes(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": blob(args.layout, config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": blob(args.layout, compressed), "size": len(compressed)}],
        "annotations": s["labels"],
    }
    manifest_bytes = json_bytes(manifest)
    manifest_digest = blob(args.layout, manifest_bytes)
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": len(manifest_bytes),
            "annotations": {"org.opencontainers.image.ref.name": s["ref_name"]},
        }],
    }
    with open(os.path.join(args.layout, "index.json"), "wb") as f:
        f.write(json_bytes(index))
    with open(os.path.join(args.layout, "oci-layout"), "wb") as f:
        f.write(json_bytes({"imageLayoutVersion": "1.0.0"}))
    if args.oci_archive:
        write_archive(args.layout, args.oci_archive, mtime)
    print(json.dumps({"digest": manifest_digest, "compressed_bytes": len(compressed) +
                      len(config_bytes) + len(manifest_bytes), "uncompressed_bytes": len(tar)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
