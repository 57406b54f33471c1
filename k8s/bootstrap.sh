#!/usr/bin/env bash
# From nothing to inferq answering through Traefik (a Gateway API HTTPRoute), on a local
# kind cluster.
#
#   k8s/bootstrap.sh            everything below, in order
#   k8s/bootstrap.sh cluster    the kind cluster (k8s/kind/cluster.yaml)
#   k8s/bootstrap.sh addons     kube-prometheus-stack, Jaeger, the OpenTelemetry Collector,
#                               KEDA, the Gateway API CRDs and Traefik
#   k8s/bootstrap.sh images     build both images and load them into the cluster
#   k8s/bootstrap.sh inferq     install or upgrade the chart with k8s/inferq/values-kind.yaml
#   k8s/bootstrap.sh check      helm test, then one prediction through Traefik
#   k8s/bootstrap.sh down       delete the cluster
#
# Needs docker, kind, kubectl, helm and curl. Chart versions are pinned below; override
# them through the environment (e.g. KEDA_VERSION=2.18.1 k8s/bootstrap.sh addons).
set -euo pipefail

cd "$(dirname "$0")/.."

CLUSTER="${CLUSTER:-inferq}"
NAMESPACE="${NAMESPACE:-inferq}"
RELEASE="${RELEASE:-inferq}"
TAG="${TAG:-dev}"
HOST="${HOST:-inferq.localhost}"
KUBE_PROMETHEUS_STACK_VERSION="${KUBE_PROMETHEUS_STACK_VERSION:-88.0.0}"
KEDA_VERSION="${KEDA_VERSION:-2.18.0}"
TRAEFIK_VERSION="${TRAEFIK_VERSION:-39.0.0}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.4.0}"

log() { printf '\n==> %s\n' "$*"; }

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bootstrap: $tool is not installed" >&2; exit 1; }
  done
}

cluster() {
  need kind kubectl
  if kind get clusters | grep -qx "$CLUSTER"; then
    log "kind cluster $CLUSTER exists"
  else
    log "creating kind cluster $CLUSTER"
    kind create cluster --name "$CLUSTER" --config k8s/kind/cluster.yaml --wait 120s
  fi
  kubectl config use-context "kind-$CLUSTER" >/dev/null
}

addons() {
  need helm kubectl
  log "chart repositories"
  helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
  helm repo add kedacore https://kedacore.github.io/charts --force-update
  helm repo add traefik https://traefik.github.io/charts --force-update
  helm repo update

  # First: its CRDs (ServiceMonitor, PodMonitor, PrometheusRule) are used by the others.
  log "kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION"
  helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
    --version "$KUBE_PROMETHEUS_STACK_VERSION" --namespace observability --create-namespace \
    --values k8s/kube-prometheus-stack/values.yaml --wait --timeout 10m

  log "Jaeger and the OpenTelemetry Collector"
  kubectl apply --namespace observability -f k8s/tracing/jaeger.yaml
  kubectl apply --namespace observability -f k8s/otel-collector/collector.yaml
  kubectl --namespace observability rollout status deployment/jaeger --timeout 5m
  kubectl --namespace observability rollout status deployment/otel-collector --timeout 5m

  log "KEDA $KEDA_VERSION"
  helm upgrade --install keda kedacore/keda --version "$KEDA_VERSION" \
    --namespace keda --create-namespace --values k8s/keda/values.yaml --wait --timeout 5m

  log "Gateway API $GATEWAY_API_VERSION (standard channel CRDs)"
  kubectl apply --server-side -f \
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml"

  log "Traefik $TRAEFIK_VERSION (Ingress and Gateway API)"
  helm upgrade --install traefik traefik/traefik --version "$TRAEFIK_VERSION" \
    --namespace traefik --create-namespace --values k8s/traefik/values-kind.yaml \
    --wait --timeout 5m
}

images() {
  need docker kind
  log "building inferq-api:$TAG and inferq-worker:$TAG"
  docker build --file Dockerfile.worker --tag "inferq-worker:$TAG" .
  docker build --file Dockerfile.api --tag "inferq-api:$TAG" .
  log "loading the images into kind"
  kind load docker-image --name "$CLUSTER" "inferq-api:$TAG" "inferq-worker:$TAG"
}

inferq() {
  need helm
  log "installing $RELEASE into namespace $NAMESPACE"
  helm upgrade --install "$RELEASE" charts/inferq --namespace "$NAMESPACE" --create-namespace \
    --values k8s/inferq/values-kind.yaml \
    --set api.image.tag="$TAG" --set workers.image.tag="$TAG" \
    --set "api.httpRoute.hostnames[0]=$HOST" \
    --wait --timeout 10m
}

check() {
  need helm curl kubectl
  # The test pod stays after it passes (Helm 3 reads its logs only then): --logs works
  # on Helm 3 and 4.
  log "helm test"
  helm test "$RELEASE" --namespace "$NAMESPACE" --logs
  # An API key, made in an API pod (which reaches Redis and needs no key for it).
  log "an API key (tenant kind, scope predict)"
  key=$(kubectl --namespace "$NAMESPACE" exec "deploy/$RELEASE-api" -- \
    inferq keys create --tenant kind --scopes predict --name bootstrap |
    sed -n 's/.*"key": *"\([^"]*\)".*/\1/p')
  log "a prediction through Traefik (http://$HOST)"
  curl --fail --silent --show-error --retry 10 --retry-delay 3 --retry-all-errors \
    --resolve "$HOST:80:127.0.0.1" -H "Authorization: Bearer $key" "http://$HOST/v1/models"
  echo
  curl --fail --silent --show-error --resolve "$HOST:80:127.0.0.1" \
    -H "Authorization: Bearer $key" \
    -H 'content-type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' \
    "http://$HOST/v1/models/iris/predict?wait=10"
  echo
}

down() {
  need kind
  log "deleting kind cluster $CLUSTER"
  kind delete cluster --name "$CLUSTER"
}

case "${1:-all}" in
  all) cluster; addons; images; inferq; check ;;
  cluster | addons | images | inferq | check | down) "$1" ;;
  *) echo "usage: $0 [all|cluster|addons|images|inferq|check|down]" >&2; exit 2 ;;
esac
