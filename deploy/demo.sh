#!/bin/bash
# Three-site MailMesh demo on one machine: sites fra, ams and lon on
# 127.0.0.2, 127.0.0.3 and 127.0.0.4, each with its own Dovecot back end and
# one mmnode (imap with STARTTLS, imaps, pop3 with STLS, pop3s, smtp with
# STARTTLS; Dovecot takes mail by LMTP) on free ports, running in the
# background. The nodes gossip with each other, and a
# login at any site for a user of another is carried to that site.
#
#   deploy/demo.sh          install what is missing, build, (re)start
#   deploy/demo.sh stop     stop what the demo started
#
# The nodes run with the signed directory on: the demo makes a cluster root
# key, a node key and a transport key per node certified by it, and adds
# each user with mmctl at their own site.
#
# State (configs, certificates, keys and stores, mail, logs, pids) lives in
# ${MM_DEMO_DIR:-/var/tmp/mailmesh-demo-UID} (not under $HOME: Dovecot's
# unprivileged processes must reach it, and /root is mode 0700); demo.env is
# written to the directory the script is started from: MM_SITES (site
# names), MM_<SITE>_IMAP, MM_<SITE>_POP3 and MM_<SITE>_SMTP per site, and
# MM_IMAP, MM_IMAPS, MM_POP3, MM_POP3S, MM_SMTP, MM_CA,
# MM_DEMO_USER, MM_DEMO_PASS and MMCTL for the first site (fra), where
# MM_DEMO_USER lives ($MMCTL sites, $MMCTL user show "$MM_DEMO_USER").
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
state=${MM_DEMO_DIR:-/var/tmp/mailmesh-demo-$(id -u)}
build="$repo/build-demo"
action=${1:-start}

case "$action" in
stop)
	if [ -d "$state" ]; then
		exec python3 "$here/demo.py" stop --state "$state"
	fi
	echo "no demo running"
	exit 0
	;;
start) ;;
*)
	echo "usage: $0 [start|stop]" >&2
	exit 2
	;;
esac

need_deps() {
	local c
	for c in python3 dovecot curl openssl cmake pkg-config cc; do
		command -v "$c" >/dev/null 2>&1 || return 0
	done
	pkg-config --exists libevent libevent_openssl openssl libsodium msgpack \
		lmdb 2>/dev/null || return 0
	return 1
}

if need_deps; then
	echo "installing missing dependencies"
	if [ "$(id -u)" -ne 0 ]; then
		echo "dependencies are missing; run as root: $here/install-deps.sh" >&2
		exit 1
	fi
	"$here/install-deps.sh"
fi

echo "building mmnode in $build"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMM_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target mmnode mmctl >/dev/null

exec python3 "$here/demo.py" start --state "$state" --build "$build" \
	--env-file "$PWD/demo.env"
