# Shell helpers shared by the benchmark scripts (sourced, not run).

# Waits up to 10 s for `url` to answer 2xx.
wait_http() {  # url
  for _ in $(seq 1 200); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "not answering: $1" >&2
  return 1
}

# Long-polls a floodgated batch until it ends; prints the batch's final JSON.
wait_batch_end() {  # floodgated-url batch-id
  local version=0 body state
  while :; do
    body=$(curl -fs "$1/v1/batches/$2?wait_s=5&after_version=$version")
    state=$(jq -r .state <<<"$body")
    version=$(jq -r .version <<<"$body")
    [[ $state == COMPLETED || $state == FAILED || $state == CANCELLED ]] && break
  done
  echo "$body"
}
