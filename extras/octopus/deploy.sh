#!/usr/bin/env bash
# Octopus Deploy "Run a Script" step (Bash): canary rollout of the release
# Octopus is deploying. Octopus variables in, ansible-playbook's exit code out.
#
# Project variables:
#   Canary.Inventory      inventory of the web servers (path in the step's package or worker)
#   Canary.VarsFile       variables of the application (rollout_app, rollout_target_groups, ...)
#   Canary.PackageUrl     where each host downloads the release zip (the feed URL of the package)
#   Canary.PackageSha256  sha256 of that zip (64 hex digits)
#   Canary.Serial         hosts per batch (default 1)
#   Canary.BakeSeconds    seconds each host is judged before it is promoted (default 120)
#   Canary.ReportDir      where rollout-report.json and rollout-junit.xml go (default: the working folder)
#   Canary.Forks          hosts Ansible works on at once (default 25): after an abort every host
#                         that took the release is reverted in parallel, up to this many
# and Octopus.Release.Number as the version (the new IIS site is <app>-<version>).
#
# Exit code: 0 = every host promoted, or nothing to do; non-zero = the rollout
# was refused before any change (2), aborted with every host that took the
# release reverted (2), or could not run (1, 4, 5). The output variable
# RolloutResult says which: promoted, nothing_to_do, stopped_after_first,
# aborted, or refused when no report was written. Both reports are attached
# to the deployment as artifacts.
set -uo pipefail

octopus() {  # octopus NAME [DEFAULT]: an Octopus variable (get_octopusvariable exists inside Octopus only)
    local value=''
    if declare -F get_octopusvariable >/dev/null; then
        value=$(get_octopusvariable "$1")
    fi
    printf '%s' "${value:-${2:-}}"
}

inventory=$(octopus Canary.Inventory)
vars_file=$(octopus Canary.VarsFile)
version=$(octopus Octopus.Release.Number)
package_url=$(octopus Canary.PackageUrl)
package_sha256=$(octopus Canary.PackageSha256)
serial=$(octopus Canary.Serial 1)
bake_seconds=$(octopus Canary.BakeSeconds 120)
report_dir=$(octopus Canary.ReportDir "$PWD")
forks=$(octopus Canary.Forks 25)

for required in inventory vars_file version package_url package_sha256; do
    if [ -z "${!required}" ]; then
        echo "Octopus variable for $required is empty; set it in the project's variables" >&2
        exit 5
    fi
done
if ! [[ "$forks" =~ ^[1-9][0-9]*$ ]]; then
    echo "Octopus variable Canary.Forks is '$forks'; set it to a whole number of hosts of at least 1 (default 25)" >&2
    exit 5
fi

report="$report_dir/rollout-report.json"
junit="$report_dir/rollout-junit.xml"
rm -f "$report" "$junit"

ansible-playbook -i "$inventory" immune.canary.deploy -f "$forks" -e @"$vars_file" \
  -e rollout_version="$version" -e rollout_package_url="$package_url" \
  -e rollout_package_checksum="sha256:$package_sha256" \
  -e rollout_serial="$serial" -e rollout_bake_seconds="$bake_seconds" \
  -e rollout_report_path="$report" -e rollout_junit_path="$junit"
rc=$?

result=refused
if [ -s "$report" ]; then
    result=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["result"])' "$report")
fi
echo "Rollout of $version: $result (ansible-playbook exit code $rc)"
if declare -F set_octopusvariable >/dev/null; then
    set_octopusvariable "RolloutResult" "$result"
fi
if declare -F new_octopusartifact >/dev/null; then
    [ -s "$report" ] && new_octopusartifact "$report"
    [ -s "$junit" ] && new_octopusartifact "$junit"
fi
exit "$rc"
