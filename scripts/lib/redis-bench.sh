# What the scripts that run redis-benchmark share. Sourced (not run) by scripts/bench-resp.sh and
# scripts/bench-resp-wakeups.sh, after they define `log`.

# Installs redis-server and redis-tools (redis-benchmark) if missing (Debian, as root or with sudo).
need_redis_tools() {
    if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
        return 0
    fi
    command -v apt-get >/dev/null || { log "redis-server and redis-tools are needed (no apt-get here)"; exit 1; }
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
    log "installing redis-server and redis-tools"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools >/dev/null
}

# CPU time (user + system) of process $1 so far, in clock ticks (getconf CLK_TCK per second).
cpu_ticks() { awk '{ split($0, a, ") "); split(a[2], f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
