# Shared by tools/bench/compare and tools/bench/cold_logins (sourced): a free loopback port,
# waiting for a POP3 greeting, and a private Dovecot instance on loopback.
#
# start_dovecot reads: work (temp dir), data (benchdata.py maildirs output), dovecot_port,
# server_cpu, idle_both_max; and optionally dovecot_scheme (the passdb's default scheme,
# SHA512-CRYPT), dovecot_auth_cache_size (64M; 0 turns the auth cache off) and
# dovecot_warm_users (user patterns whose indexes are built before measuring). It sets
# dovecot_pid. The system's /etc/dovecot and its service are never touched.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_dovecot() {
  local dir="$work/dovecot"
  mkdir -p "$dir/run" "$dir/state"
  cat >"$dir/dovecot.conf" <<EOF
# Written by tools/bench/compare: a private Dovecot instance on loopback.
instance_name = posthaste-bench
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 8
last_valid_uid = 8
first_valid_gid = 8
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
passdb {
  driver = passwd-file
  args = scheme=${dovecot_scheme:-SHA512-CRYPT} $data/passwd
}
userdb {
  driver = passwd-file
  args = $data/passwd
}
# Successful verifications are cached, as posthaste caches them.
auth_cache_size = ${dovecot_auth_cache_size:-64M}
auth_cache_ttl = 1 hour
# Performance: long-lived login processes (one per server core), enough processes and
# connections for the idle scenario.
default_process_limit = $((idle_both_max + 1000))
default_client_limit = $((idle_both_max + 1000))
default_vsz_limit = 1G
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $dovecot_port
  }
  inet_listener pop3s {
    port = 0
  }
  service_count = 0
  process_min_avail = 1
  # Each long-lived login process serves up to default_client_limit connections.
  process_limit = 4
}
service pop3 {
  process_limit = $((idle_both_max + 1000))
}
EOF
  taskset -c "$server_cpu" /usr/sbin/dovecot -F -c "$dir/dovecot.conf" &
  dovecot_pid=$!
  wait_for_pop3 "$dovecot_port" dovecot
  # Build every mailbox's index and dovecot-uidlist now, so the runs measure steady state.
  # (Idle users' empty mailboxes are created at their first login, as for a new account.)
  local pattern
  local -a patterns
  read -r -a patterns <<<"${dovecot_warm_users:-user* bulk* big*}"
  for pattern in "${patterns[@]}"; do
    doveadm -c "$dir/dovecot.conf" mailbox status -u "$pattern" messages INBOX >/dev/null
  done
  log "dovecot $(dovecot --version | cut -d' ' -f1) up on 127.0.0.1:$dovecot_port (pid $dovecot_pid, CPU $server_cpu)"
}

wait_for_pop3() {
  local port=$1 name=$2
  for _ in $(seq 1 300); do
    if python3 - "$port" <<'EOF' 2>/dev/null; then return 0; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
line = s.makefile("rb").readline()
s.sendall(b"QUIT\r\n")
sys.exit(0 if line.startswith(b"+OK") else 1)
EOF
    sleep 0.1
  done
  echo "compare: $name did not answer on port $port" >&2
  exit 1
}
