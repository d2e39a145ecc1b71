#!/bin/sh
# fastproxy's wrapper script: set AWS_LAMBDA_EXEC_WRAPPER=/opt/wrapper-script.sh.
#
# Lambda starts the runtime through this script with the runtime's command line as arguments.
# It points the runtime (only the runtime: extensions keep the real value) at the proxy by
# rewriting AWS_LAMBDA_RUNTIME_API, then execs the runtime's command line, or the wrapper
# named by FASTPROXY_NEXT_WRAPPER (e.g. /opt/otel-instrument) with the same arguments.
#
# The address is read from the variables the proxy reads, so one setting configures both:
#   port: FASTPROXY_PORT, else LRAP_LISTENER_PORT, else 9009
#   host: FASTPROXY_HOST, else 127.0.0.1
#
# Chaining two proxies: runtime -> proxy A (127.0.0.1:9009) -> proxy B (127.0.0.1:9010)
# -> Runtime API.
#   proxy B: listens on 9010, upstream = the real AWS_LAMBDA_RUNTIME_API (its default).
#   proxy A: listens on 9009, upstream = B: FASTPROXY_UPSTREAM=127.0.0.1:9010 for fastproxy
#            (LRAP_LISTENER_PORT / LRAP_RUNTIME_API_ENDPOINT for the AWS samples' proxies).
#   wrappers: the runtime must end up with AWS_LAMBDA_RUNTIME_API=127.0.0.1:9009, and each
#            proxy wrapper overwrites it, so A's wrapper must run *last*: set
#            AWS_LAMBDA_EXEC_WRAPPER to B's wrapper and have it exec A's. When B is fastproxy
#            too, a two-line script in the layer does it:
#                #!/bin/sh
#                FASTPROXY_PORT=9010 FASTPROXY_NEXT_WRAPPER=/opt/wrapper-a exec /opt/wrapper-script.sh "$@"
#            with /opt/wrapper-a:  FASTPROXY_PORT=9009 exec /opt/wrapper-script.sh "$@"
#   A wrapper that does not touch AWS_LAMBDA_RUNTIME_API (OpenTelemetry's, say) can come
#   anywhere in the chain: FASTPROXY_NEXT_WRAPPER=/opt/otel-instrument.
# FASTPROXY_NEXT_WRAPPER is removed from the environment before the next wrapper runs, so a
# second copy of this script execs the runtime instead of looping.
#
# The source of truth is fastproxy/layer_files/wrapper-script.sh inside the package (so an
# installed wheel can build a layer); the repository's top-level wrapper-script.sh links to it.

port=${FASTPROXY_PORT:-${LRAP_LISTENER_PORT:-9009}}
host=${FASTPROXY_HOST:-127.0.0.1}
case $port in
    '' | *[!0-9]*)
        echo "wrapper-script.sh: port '$port' (FASTPROXY_PORT / LRAP_LISTENER_PORT) is not a" \
            "number" >&2
        exit 2
        ;;
esac
case $host in
    *:*) host="[$host]" ;;
esac
if [ $# -eq 0 ]; then
    echo "usage: wrapper-script.sh RUNTIME [ARGS...] (set AWS_LAMBDA_EXEC_WRAPPER to this" \
        "script; Lambda passes the runtime's command line)" >&2
    exit 2
fi

AWS_LAMBDA_RUNTIME_API=$host:$port
export AWS_LAMBDA_RUNTIME_API

if [ -n "${FASTPROXY_NEXT_WRAPPER:-}" ]; then
    next=$FASTPROXY_NEXT_WRAPPER
    unset FASTPROXY_NEXT_WRAPPER
    # Same status codes as the managed runtimes' bootstrap for AWS_LAMBDA_EXEC_WRAPPER.
    if [ ! -e "$next" ]; then
        echo "wrapper-script.sh: FASTPROXY_NEXT_WRAPPER=$next does not exist" >&2
        exit 127
    fi
    if [ ! -x "$next" ]; then
        echo "wrapper-script.sh: FASTPROXY_NEXT_WRAPPER=$next is not executable" >&2
        exit 126
    fi
    exec "$next" "$@"
fi
exec "$@"
