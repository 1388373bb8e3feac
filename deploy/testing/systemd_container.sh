# shellcheck shell=bash
# A Debian 12 container with systemd as PID 1, for the deployment tests of the systemd unit
# (deploy/systemd/test) and the Debian package (deploy/debian/test). Sourced, not run.
#
#   source deploy/testing/systemd_container.sh
#   sc_init                                  # temp dir, podman storage, containers.conf, trap
#   sc_can_run || exit 77                    # prints a "skip: ..." line when the machine cannot
#   rootfs=$(sc_rootfs curl procps)          # cached Debian 12 tree: systemd plus these packages
#   sc_start "$rootfs" none                  # boots it (network: none or slirp4netns)
#   sc_exec systemctl start posthaste        # runs a command inside
#   (sc_cleanup runs on exit: removes the container and the temp dir)
#
# The rootfs is built with mmdebstrap from Debian's mirror and cached under
# ~/.cache/posthaste-rootfs/ (keyed by its package list; rebuilt when older than 14 days), and
# mounted as an overlay (`--rootfs DIR:O`), so a test never changes the cached tree. podman runs
# with a containers.conf and a storage root of the test's own (CONTAINERS_CONF, --root,
# --runroot): runc (crun refuses this host's hybrid cgroup layout) and open-file/process limits
# the host allows; /etc is never touched. Outer seccomp is unconfined so that the unit's own
# SystemCallFilter is the one under test (podman's default profile blocks io_uring), and
# CAP_SYS_ADMIN lets systemd build the unit's namespaces as it would on a host (without it,
# systemd skips ProtectSystem=, PrivateTmp= and the like, logging "... ignoring").

SC_SUITE=bookworm
SC_MIRRORS=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
SC_BASE_PACKAGES=(systemd systemd-sysv curl openssl ca-certificates)
SC_CACHE_DIR="${PH_ROOTFS_CACHE:-${HOME}/.cache/posthaste-rootfs}"
SC_ROOTFS_MAX_AGE_DAYS=14
SC_BOOT_TIMEOUT_S=60

sc_work=""
sc_name=""

sc_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Fails the test with a message (exit 1).
sc_fail() {
  echo "FAIL: $*" >&2
  exit 1
}

sc_podman() {
  CONTAINERS_CONF="$sc_work/containers.conf" podman --root "$sc_work/storage" \
    --runroot "$sc_work/run" "$@"
}

sc_init() {
  sc_work=$(mktemp -d -p /var/tmp --suffix=.posthaste-sc)
  sc_name="posthaste-sc-$$"
  cat >"$sc_work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=8192:8192"]
[engine]
runtime = "runc"
EOF
  trap sc_cleanup EXIT
  trap 'exit 130' INT TERM HUP
}

sc_cleanup() {
  local rc=$?
  set +e  # clean up as much as possible
  # A reader that went away (`test | grep -m1 FAIL`) must not kill the cleanup with SIGPIPE.
  trap '' PIPE
  if [ -n "$sc_work" ]; then
    if [ -n "$sc_name" ] && sc_podman container exists "$sc_name" 2>/dev/null; then
      if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        echo "---- journal of the container (last 60 lines) ----" >&2
        sc_podman exec "$sc_name" journalctl --no-pager -n 60 >&2 2>/dev/null || true
      fi
      sc_podman rm -f -t 5 "$sc_name" >/dev/null 2>&1
    fi
    # containers/storage leaves its overlay directory mounted (private); `podman system reset`
    # would also drop host-wide CNI networks, so unmount by hand.
    awk -v w="$sc_work" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r |
      while read -r mnt; do umount -l "$mnt" 2>/dev/null; done
    rm -rf "$sc_work"
  fi
  exit "$rc"
}

# Whether this machine can run a systemd container: prints "skip: <reason>" and returns 1 if not.
sc_can_run() {
  local tool
  for tool in podman runc mmdebstrap; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "skip: $tool is not installed (tools/lib/deps.sh PH_DEPLOY_PACKAGES)"
      return 1
    fi
  done
  if [ "$(id -u)" -ne 0 ]; then
    echo "skip: a systemd container with CAP_SYS_ADMIN needs root (rootful podman)"
    return 1
  fi
  return 0
}

# Prints the path of a cached Debian 12 rootfs with systemd, SC_BASE_PACKAGES and "$@",
# building it first if needed (about 20 s; the cache makes reruns instant).
sc_rootfs() {
  local packages key dir
  packages=$(printf '%s\n' "${SC_BASE_PACKAGES[@]}" "$@" | sort -u | tr '\n' ' ')
  key=$(printf '%s|%s|%s|v1' "$SC_SUITE" "${SC_MIRRORS[*]}" "$packages" | sha256sum | cut -c1-16)
  dir="$SC_CACHE_DIR/$key"
  if [ -f "$dir/done" ] &&
     [ -z "$(find "$dir/done" -mtime +"$SC_ROOTFS_MAX_AGE_DAYS" 2>/dev/null)" ]; then
    echo "$dir/rootfs"
    return 0
  fi
  mkdir -p "$SC_CACHE_DIR"
  # Trees of other package lists (an older binary's libraries) age out with the same rule.
  find "$SC_CACHE_DIR" -mindepth 1 -maxdepth 1 -type d -mtime +"$SC_ROOTFS_MAX_AGE_DAYS" \
    -exec rm -rf {} +
  local tmp
  tmp=$(mktemp -d -p "$SC_CACHE_DIR" --suffix=.build)
  sc_log "building the rootfs ($packages) into $dir"
  if ! mmdebstrap --variant=minbase --include="${packages// /,}" "$SC_SUITE" "$tmp/rootfs" \
      "${SC_MIRRORS[@]}" >"$tmp/mmdebstrap.log" 2>&1; then
    tail -20 "$tmp/mmdebstrap.log" >&2
    rm -rf "$tmp"
    return 1
  fi
  echo "$packages" >"$tmp/packages"
  touch "$tmp/done"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  echo "$dir/rootfs"
}

# Boots ROOTFS (as an overlay) with systemd as PID 1; NETWORK is none (loopback only) or
# slirp4netns (outbound only: nothing listening inside is reachable from the host). Extra
# podman arguments follow. Waits until systemd has finished booting.
sc_start() {
  local rootfs=$1 network=$2
  shift 2
  sc_podman run -d --name "$sc_name" --hostname posthaste-test --network="$network" \
    --systemd=always --cap-add=SYS_ADMIN --security-opt seccomp=unconfined \
    --security-opt label=disable "$@" --rootfs "$rootfs:O" /sbin/init >/dev/null ||
    sc_fail "podman run failed"
  local i state
  for ((i = 0; i < SC_BOOT_TIMEOUT_S * 2; i++)); do
    state=$(sc_podman exec "$sc_name" systemctl is-system-running 2>/dev/null) || true
    case "$state" in
      running) return 0 ;;
      degraded)
        sc_podman exec "$sc_name" systemctl --failed --no-pager >&2
        return 0
        ;;
    esac
    sleep 0.5
  done
  sc_fail "systemd in the container did not finish booting in ${SC_BOOT_TIMEOUT_S}s (state: $state)"
}

# Runs a command inside the container (stdin passed through).
sc_exec() {
  sc_podman exec -i "$sc_name" "$@"
}

# Runs a command inside the container with every capability (e.g. CAP_SYS_PTRACE to enter the
# namespaces of a service running as another user).
sc_exec_privileged() {
  sc_podman exec --privileged "$sc_name" "$@"
}

# Polls CMD... inside the container until it succeeds, for at most SECONDS.
sc_wait_for() {
  local seconds=$1
  shift
  local i
  for ((i = 0; i < seconds * 4; i++)); do
    sc_exec "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  return 1
}
