# Builds lcache-node and lcache-bench as deployed and leaves their directory in $BIN. Sourced
# by the benchmark scripts, after they define `log` and ROOT.
#
# PGO=1 (the default): the production profile plus profile-guided optimisation
# (scripts/build-pgo.sh); PGO=0: the production profile alone (fat LTO, see Cargo.toml).
build_deployed() {
    if [ "${PGO:-1}" = 1 ]; then
        log "building lcache-node and lcache-bench (production profile + PGO: scripts/build-pgo.sh)"
        BIN=$(bash "$ROOT/scripts/build-pgo.sh")
    else
        log "building lcache-node and lcache-bench (production profile)"
        cargo build --profile production -q -p lcache-node --bin lcache-node \
            -p lcache-bench --bin lcache-bench
        BIN=${CARGO_TARGET_DIR:-$ROOT/target}/production
    fi
}
