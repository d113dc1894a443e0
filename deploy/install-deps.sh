#!/bin/bash
# Install everything MailMesh needs to build, test and run its demo on
# Debian 12. Safe to run again: it only installs what is missing and never
# leaves a system mail daemon running (tests and the demo start private
# instances on free ports).
set -eu

PACKAGES="build-essential cmake pkg-config libevent-dev libssl-dev
libsodium-dev libmsgpack-dev liblmdb-dev libcmocka-dev dovecot-imapd
dovecot-pop3d dovecot-lmtpd postfix perdition nginx libnginx-mod-mail swaks socat
haproxy curl fetchmail isync lmdb-utils clang libclang-rt-14-dev python3 openssl
iproute2 procps libnet-ssleay-perl libio-socket-ssl-perl"

# System services the packages above may start on their default ports.
SERVICES="dovecot postfix nginx perdition haproxy"

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh must run as root. Run:" >&2
	echo "  sudo $0" >&2
	exit 1
fi

missing=""
for p in $PACKAGES; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	if [ "$st" != "installed" ]; then
		missing="$missing $p"
	fi
done

# Pids of daemons run from the system configuration. Private instances
# (started with -c DIR/... or perdition -f FILE) belong to someone else.
system_pids() {
	for pat in /usr/sbin/dovecot /usr/lib/postfix/sbin/master \
	    /usr/sbin/perdition "nginx: master" /usr/sbin/haproxy; do
		for pid in $(pgrep -f "^$pat" 2>/dev/null || true); do
			cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
			case "$cmd" in
			*" -f /etc/haproxy/"*) ;;
			""|*" -c "*|*" -f "*) continue ;;
			esac
			echo "$pid"
		done
	done
}

stop_services() {
	for s in $SERVICES; do
		if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
			if systemctl is-active --quiet "$s" 2>/dev/null; then
				echo "stopping system service $s"
				systemctl stop "$s" || true
			fi
			systemctl disable --quiet "$s" 2>/dev/null || true
		fi
	done
	pids=$(system_pids)
	[ -n "$pids" ] || return 0
	for s in $SERVICES; do
		# policy-rc.d forbids invoke-rc.d; call the script itself.
		if [ -x "/etc/init.d/$s" ]; then
			"/etc/init.d/$s" stop >/dev/null 2>&1 || true
		fi
	done
	for pid in $(system_pids); do
		echo "stopping pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
		kill "$pid" 2>/dev/null || true
	done
}

if [ -z "$missing" ]; then
	echo "all packages present"
	stop_services
	exit 0
fi

echo "installing:$missing"

if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
fi

export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" |
	debconf-set-selections

apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	$missing

stop_services
echo "done"
