#!/usr/bin/env bash
# tools/xfstests.sh - run xfstests (fstests) against two walrusfs volumes, the way FUSE
# filesystems (gocryptfs, JuiceFS, libfuse's passthrough) run it: FSTYP=fuse,
# FUSE_SUBTYP=.walrusfs, mount(8) calling the `mount.fuse.walrusfs` helper.
#
# This script fetches nothing. It needs an xfstests checkout OUTSIDE this repository
# (never commit it), e.g.:
#
#   git clone https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git /work/xfstests
#   (or: git --git-dir=<a mirror of kdave/xfstests> archive HEAD | tar -x -C /work/xfstests)
#
# It builds it (`make configure && make`, once), installs the build and runtime packages
# with apt-get, creates the fsgqa users, installs /sbin/mount.fuse.walrusfs (a symlink to this
# checkout's helper), writes local.config in the checkout, starts a devnet of its own and
# runs `./check` there. Run as root (xfstests needs it).
#
# Usage:
#   sudo tools/xfstests.sh [CHECK ARGS...]       default CHECK ARGS: -g quick
#   sudo tools/xfstests.sh generic/001 generic/002
#   make xfstests                                 (same as the first line)
#
# Environment:
#   XFSTESTS_DIR      the xfstests checkout (default: ../xfstests next to this repository)
#   XFSTESTS_HOME     WALRUSFS_HOME of the run: its own devnet, wallet, volumes and mount
#                     points, so other walrusfs mounts are never touched
#                     (default /var/tmp/walrusfs-xfstests)
#   XFSTESTS_TIMEOUT  seconds one test may run before it is killed and counted as failed
#                     (default 600; 0 = no limit). check(1) has no timeout of its own.
#   XFSTESTS_SHARDS   shards of the devnet at genesis (default 100: cheaper on 2 cores)
#   XFSTESTS_KEEP=1   leave the volumes mounted and the devnet running afterwards
#   XFSTESTS_REV      the walrusfs commit to test (default HEAD): `git archive` of it goes to
#                     $XFSTESTS_HOME/src and PYTHONPATH points there (for the helper, the
#                     daemons, the upload workers), so edits made in this working tree while
#                     the run lasts (an hour) never change the code under test.
#                     XFSTESTS_REV=worktree tests the working tree itself.
#
# Results: $XFSTESTS_DIR/results/ (check.log, result.xml, generic/NNN.out.bad|.full), plus
# results/walrusfs-summary.txt and results/timeouts.txt (tests the watchdog killed).
# Exit status: 0 when nothing failed, 1 when some test failed, 2 on a setup error.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
XFSTESTS_DIR=${XFSTESTS_DIR:-$(dirname "$REPO")/xfstests}
XFSTESTS_HOME=${XFSTESTS_HOME:-/var/tmp/walrusfs-xfstests}
XFSTESTS_TIMEOUT=${XFSTESTS_TIMEOUT:-600}
XFSTESTS_SHARDS=${XFSTESTS_SHARDS:-100}
WALRUSFS=$REPO/.venv/bin/walrusfs
HELPER=$REPO/.venv/bin/mount.fuse.walrusfs
TEST_DEV=walrusfs:xfs-test
SCRATCH_DEV=walrusfs:xfs-scratch
TEST_DIR=$XFSTESTS_HOME/mnt/test
SCRATCH_MNT=$XFSTESTS_HOME/mnt/scratch
MARKER="# written by walrusfs tools/xfstests.sh"

APT_BUILD="build-essential autoconf automake libtool pkg-config gettext uuid-dev xfslibs-dev
libattr1-dev libacl1-dev libaio-dev liburing-dev libgdbm-dev libgdbm-compat-dev libcap-dev"
APT_RUN="xfsprogs acl attr bc dump e2fsprogs fio gawk indent lvm2 psmisc quota sed xfsdump
sqlite3 perl util-linux fuse3"

say() { echo "xfstests.sh: $*"; }
die() { echo "xfstests.sh: error: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (xfstests mounts, switches users and drops caches)"
[ -x "$WALRUSFS" ] || die "$WALRUSFS missing: run \`make setup\` first"
[ -x "$HELPER" ] || die "$HELPER missing: run \`make setup\` first"
if [ ! -x "$XFSTESTS_DIR/check" ]; then
    cat >&2 <<EOF
xfstests.sh: error: no xfstests checkout in $XFSTESTS_DIR (set XFSTESTS_DIR).
Get one outside this repository, for example:
  git clone https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git $XFSTESTS_DIR
This script builds it; it never fetches it, and it must never be committed here.
EOF
    exit 2
fi
case "$(cd "$XFSTESTS_DIR" && pwd)/" in
"$REPO"/*) die "$XFSTESTS_DIR is inside this repository: put the checkout outside it" ;;
esac

# --- packages -------------------------------------------------------------------------------
missing=""
for p in $APT_BUILD $APT_RUN; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    say "installing:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
        die "apt-get install failed"
fi

# --- build (once) ---------------------------------------------------------------------------
if [ ! -x "$XFSTESTS_DIR/ltp/fsx" ] || [ ! -x "$XFSTESTS_DIR/src/t_dir_type" ]; then
    say "building $XFSTESTS_DIR (make configure && make)"
    (cd "$XFSTESTS_DIR" && { [ -f configure ] || make configure; } && nice make -j"$(nproc)") \
        >"$XFSTESTS_DIR/build.log" 2>&1 || die "build failed, see $XFSTESTS_DIR/build.log"
fi

# --- users (xfstests README: fsgqa, fsgqa2, 123456-fsgqa, group fsgqa) ----------------------
getent group fsgqa >/dev/null || groupadd fsgqa
id fsgqa >/dev/null 2>&1 || useradd -m -g fsgqa fsgqa
id fsgqa2 >/dev/null 2>&1 || useradd -m fsgqa2
id 123456-fsgqa >/dev/null 2>&1 || useradd -g fsgqa 123456-fsgqa 2>/dev/null ||
    useradd --badname -g fsgqa 123456-fsgqa || say "could not create user 123456-fsgqa"

# --- the mount helper: mount(8) runs /sbin/mount.fuse.walrusfs for -t fuse.walrusfs ---------
SBIN_HELPER=/sbin/mount.fuse.walrusfs
if [ -e "$SBIN_HELPER" ] || [ -L "$SBIN_HELPER" ]; then
    if [ "$(readlink -f "$SBIN_HELPER")" != "$(readlink -f "$HELPER")" ]; then
        die "$SBIN_HELPER is $(readlink -f "$SBIN_HELPER"), not this checkout's $HELPER:
  remove it (or ln -sf \"$HELPER\" $SBIN_HELPER) to test this checkout"
    fi
else
    ln -s "$HELPER" "$SBIN_HELPER"
    say "installed $SBIN_HELPER -> $HELPER"
fi

# --- the code under test: a snapshot of one commit ------------------------------------------
XFSTESTS_REV=${XFSTESTS_REV:-HEAD}
if [ "$XFSTESTS_REV" = worktree ]; then
    UNDER_TEST="working tree of $REPO ($(git -C "$REPO" rev-parse --short HEAD) + uncommitted edits)"
    export PYTHONPATH=$REPO
else
    commit=$(git -C "$REPO" rev-parse --short "$XFSTESTS_REV^{commit}") || die "no commit $XFSTESTS_REV"
    rm -rf "$XFSTESTS_HOME/src" && mkdir -p "$XFSTESTS_HOME/src" &&
        git -C "$REPO" archive "$commit" | tar -x -C "$XFSTESTS_HOME/src" ||
        die "git archive $commit failed"
    UNDER_TEST="walrusfs $commit ($(git -C "$REPO" log -1 --format=%cs "$commit"))"
    export PYTHONPATH=$XFSTESTS_HOME/src
fi
(cd / && "$REPO/.venv/bin/python" -c 'import walrusfs.cli, walrusfs.fstab, walrusfs.fs.upload_worker') ||
    die "the code under test does not import ($UNDER_TEST)"

# --- configuration --------------------------------------------------------------------------
mkdir -p "$TEST_DIR" "$SCRATCH_MNT"
# xfstests compares `df -T` types with $FSTYP ("fuse"); a walrusfs mount's type is
# fuse.walrusfs (as gocryptfs's is fuse.gocryptfs): report it as fuse, like common/rc already
# does for fuse.glusterfs and fuse.ceph-fuse.
cat >"$XFSTESTS_HOME/df" <<'EOF'
#!/bin/sh
# df for xfstests: a fuse.walrusfs mount has type "fuse" (written by tools/xfstests.sh)
df "$@" | awk '$2 == "fuse.walrusfs" { $2 = "fuse" } { print }'
EOF
chmod +x "$XFSTESTS_HOME/df"

CONFIG=$XFSTESTS_DIR/local.config
if [ -f "$CONFIG" ] && ! grep -qF "$MARKER" "$CONFIG"; then
    mv "$CONFIG" "$CONFIG.orig"
    say "kept your local.config as local.config.orig"
fi
OPTS="-o home=$XFSTESTS_HOME,allow_other"
cat >"$CONFIG" <<EOF
$MARKER
export FSTYP=fuse
export FUSE_SUBTYP=.walrusfs
export TEST_DEV=$TEST_DEV
export TEST_DIR=$TEST_DIR
export SCRATCH_DEV=$SCRATCH_DEV
export SCRATCH_MNT=$SCRATCH_MNT
export TEST_FS_MOUNT_OPTS="$OPTS"
export MOUNT_OPTIONS="$OPTS"
export DF_PROG="$XFSTESTS_HOME/df -T -P"
# the code under test (mount(8) passes the environment to the helper, and on to the daemon)
export PYTHONPATH=$PYTHONPATH
EOF

# --- devnet and a clean start ---------------------------------------------------------------
export WALRUSFS_HOME=$XFSTESTS_HOME
for mnt in "$TEST_DIR" "$SCRATCH_MNT"; do
    if findmnt -rn "$mnt" >/dev/null; then
        timeout 300 "$WALRUSFS" umount "$mnt" >/dev/null 2>&1 || umount -l "$mnt"
    fi
done
# restarted, so that its processes run the code under test too
"$WALRUSFS" devnet down >/dev/null 2>&1
"$WALRUSFS" devnet up --n-shards "$XFSTESTS_SHARDS" >/dev/null || die "walrusfs devnet up failed"

# --- per-test watchdog ----------------------------------------------------------------------
RESULTS=$XFSTESTS_DIR/results
mkdir -p "$RESULTS"
: >"$RESULTS/timeouts.txt"

descendants() {
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        descendants "$c"
        echo "$c"
    done
}

abort_fuse() { # abort the FUSE connections of this run's two mounts (a hung daemon)
    local mnt dev
    for mnt in "$TEST_DIR" "$SCRATCH_MNT"; do
        dev=$(findmnt -rnno MAJ:MIN "$mnt" 2>/dev/null) || continue
        [ -w "/sys/fs/fuse/connections/${dev#*:}/abort" ] &&
            echo 1 >"/sys/fs/fuse/connections/${dev#*:}/abort"
    done
}

watchdog() { # kill a test of check (pid $1) that runs longer than XFSTESTS_TIMEOUT seconds
    local check=$1 pid args age t
    while kill -0 "$check" 2>/dev/null; do
        sleep 10
        for pid in $(ps -o pid= --ppid "$check" 2>/dev/null); do
            args=$(ps -o args= -p "$pid" 2>/dev/null) || continue
            t=$(echo "$args" | grep -oE 'tests/[a-z0-9]+/[0-9]+' | head -1)
            [ -n "$t" ] || continue
            age=$(ps -o etimes= -p "$pid" 2>/dev/null | tr -d ' ')
            [ -n "$age" ] && [ "$age" -gt "$XFSTESTS_TIMEOUT" ] || continue
            echo "${t#tests/} killed after ${age}s" | tee -a "$RESULTS/timeouts.txt" >&2
            kill -TERM $(descendants "$pid") "$pid" 2>/dev/null
            sleep 10
            kill -0 "$pid" 2>/dev/null && kill -KILL $(descendants "$pid") "$pid" 2>/dev/null
            sleep 20
            kill -0 "$pid" 2>/dev/null && abort_fuse
        done
    done
}

# --- run ------------------------------------------------------------------------------------
[ $# -gt 0 ] || set -- -g quick
say "testing $UNDER_TEST"
say "xfstests checkout $XFSTESTS_DIR $(git -C "$XFSTESTS_DIR" log -1 --format='(%h %cs)' 2>/dev/null)"
say "running ./check -R xunit $* (WALRUSFS_HOME=$XFSTESTS_HOME, per-test timeout ${XFSTESTS_TIMEOUT}s)"
start=$(date +%s)
cd "$XFSTESTS_DIR" || exit 2
./check -R xunit "$@" &
check_pid=$!
if [ "$XFSTESTS_TIMEOUT" -gt 0 ]; then
    watchdog "$check_pid" &
    watchdog_pid=$!
fi
wait "$check_pid"
status=$?
[ -n "${watchdog_pid:-}" ] && kill "$watchdog_pid" 2>/dev/null

# --- summary --------------------------------------------------------------------------------
# check.log's last block: "Ran:" lists every test tried (those not run included),
# "Not run:" and "Failures:" the others.
last() { grep "^$1" "$RESULTS/check.log" | tail -1 | sed "s/^$1 *//"; }
tried=$(last "Ran:" | wc -w)
notrun=$(last "Not run:" | wc -w)
failed=$(last "Failures:" | wc -w)
ran=$((tried - notrun))
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), $(( ($(date +%s) - start) / 60 )) min"
    echo "command: XFSTESTS_DIR=$XFSTESTS_DIR tools/xfstests.sh $*"
    echo "tested: $UNDER_TEST"
    echo "ran $ran, passed $((ran - failed)), failed $failed, not run $notrun"
    echo "failures: $(last "Failures:")"
    [ -s "$RESULTS/timeouts.txt" ] && echo "timeouts: $(tr '\n' ';' <"$RESULTS/timeouts.txt")"
    "$REPO/tools/xfstests-triage.sh" "$XFSTESTS_DIR"
} | tee "$RESULTS/walrusfs-summary.txt"

# --- end ------------------------------------------------------------------------------------
if [ "${XFSTESTS_KEEP:-0}" != 1 ]; then
    for mnt in "$TEST_DIR" "$SCRATCH_MNT"; do
        if findmnt -rn "$mnt" >/dev/null; then
            timeout 300 "$WALRUSFS" umount "$mnt" >/dev/null 2>&1 || umount -l "$mnt"
        fi
    done
    "$WALRUSFS" devnet down >/dev/null 2>&1
fi
[ "$status" = 0 ] && [ "$failed" = 0 ] && exit 0
exit 1
