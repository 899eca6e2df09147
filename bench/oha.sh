# shellcheck shell=bash
# oha, the load generator that is not ours, pinned and installed once into the target directory;
# sourced by bench/crosscheck.sh and bench/ab.sh, which define $target_dir, log and die.

oha_version=1.16.0

# Sets $oha, installing it from crates.io the first time (its lock file builds as it is).
install_oha() {
  oha="$target_dir/oha/bin/oha"
  if [ ! -x "$oha" ] || ! "$oha" --version 2>/dev/null | grep -q "$oha_version"; then
    log "installing oha $oha_version into $target_dir/oha (cargo install --locked, a few minutes)"
    timeout 2400 cargo install oha --version "$oha_version" --locked --root "$target_dir/oha" --force --quiet ||
      die "cargo install oha $oha_version failed"
  fi
}
