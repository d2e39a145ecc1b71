"""Names and numbers of the Lambda Runtime API and Extensions API, in one place.

Only ``Final`` constants live here, so every module (and the cold-start path of the
extension) can import it for free.
"""

from __future__ import annotations

from typing import Final

API_VERSION: Final = "2018-06-01"
EXTENSIONS_API_VERSION: Final = "2020-01-01"

# Runtime API paths (under http://$AWS_LAMBDA_RUNTIME_API).
NEXT_PATH: Final = "/2018-06-01/runtime/invocation/next"
INVOCATION_PREFIX: Final = "/2018-06-01/runtime/invocation/"
RESPONSE_SUFFIX: Final = "/response"
ERROR_SUFFIX: Final = "/error"
INIT_ERROR_PATH: Final = "/2018-06-01/runtime/init/error"
RESTORE_NEXT_PATH: Final = "/2018-06-01/runtime/restore/next"
RESTORE_ERROR_PATH: Final = "/2018-06-01/runtime/restore/error"

# Extensions API paths.
EXT_REGISTER_PATH: Final = "/2020-01-01/extension/register"
EXT_EVENT_NEXT_PATH: Final = "/2020-01-01/extension/event/next"
EXT_INIT_ERROR_PATH: Final = "/2020-01-01/extension/init/error"
EXT_EXIT_ERROR_PATH: Final = "/2020-01-01/extension/exit/error"

# Invoke endpoint of the local emulator (same path as the official emulator).
INVOKE_PATH: Final = "/2015-03-31/functions/function/invocations"

# Runtime API headers.
H_REQUEST_ID: Final = "Lambda-Runtime-Aws-Request-Id"
H_DEADLINE_MS: Final = "Lambda-Runtime-Deadline-Ms"
H_FUNCTION_ARN: Final = "Lambda-Runtime-Invoked-Function-Arn"
H_TRACE_ID: Final = "Lambda-Runtime-Trace-Id"
H_CLIENT_CONTEXT: Final = "Lambda-Runtime-Client-Context"
H_COGNITO_IDENTITY: Final = "Lambda-Runtime-Cognito-Identity"
H_TENANT_ID: Final = "Lambda-Runtime-Aws-Tenant-Id"
H_INVOCATION_ID: Final = "Lambda-Runtime-Invocation-Id"
H_ERROR_TYPE: Final = "Lambda-Runtime-Function-Error-Type"
H_ERROR_BODY: Final = "Lambda-Runtime-Function-Error-Body"
H_XRAY_ERROR_CAUSE: Final = "Lambda-Runtime-Function-XRay-Error-Cause"
H_RESPONSE_MODE: Final = "Lambda-Runtime-Function-Response-Mode"
RESPONSE_MODE_STREAMING: Final = "streaming"

# Extensions API headers.
H_EXT_NAME: Final = "Lambda-Extension-Name"
H_EXT_ID: Final = "Lambda-Extension-Identifier"
H_EXT_ACCEPT_FEATURE: Final = "Lambda-Extension-Accept-Feature"
H_EXT_ERROR_TYPE: Final = "Lambda-Extension-Function-Error-Type"
H_EXT_EVENT_ID: Final = "Lambda-Extension-Event-Identifier"

# Media types.
HTTP_INTEGRATION_RESPONSE: Final = "application/vnd.awslambda.http-integration-response"
ERROR_CAUSE_JSON: Final = "application/vnd.aws.lambda.error.cause+json"

# Limits.
MAX_BUFFERED_RESPONSE_BYTES: Final = 6 * 1024 * 1024 + 100  # 6,291,556
MAX_EVENT_BYTES: Final = 6 * 1024 * 1024
MAX_STREAMED_RESPONSE_BYTES: Final = 200 * 1024 * 1024
MAX_EXTENSIONS: Final = 10
INIT_TIMEOUT_S: Final = 10.0
SHUTDOWN_BUDGET_S: Final = 2.0
PRELUDE_SEPARATOR: Final = b"\x00" * 8

# Environment variables.
ENV_RUNTIME_API: Final = "AWS_LAMBDA_RUNTIME_API"
ENV_EXEC_WRAPPER: Final = "AWS_LAMBDA_EXEC_WRAPPER"
ENV_MAX_CONCURRENCY: Final = "AWS_LAMBDA_MAX_CONCURRENCY"
ENV_PORT: Final = "FASTPROXY_PORT"
ENV_UPSTREAM: Final = "FASTPROXY_UPSTREAM"
ENV_HOST: Final = "FASTPROXY_HOST"
ENV_LRAP_PORT: Final = "LRAP_LISTENER_PORT"
ENV_LRAP_UPSTREAM: Final = "LRAP_RUNTIME_API_ENDPOINT"
ENV_LOOP: Final = "FASTPROXY_LOOP"
ENV_H11: Final = "FASTPROXY_H11"
ENV_PATH: Final = "FASTPROXY_PATH"
ENV_LOG_LEVEL: Final = "FASTPROXY_LOG_LEVEL"
ENV_MAX_HEAD_BYTES: Final = "FASTPROXY_MAX_HEAD_BYTES"
ENV_POOL_SIZE: Final = "FASTPROXY_POOL_SIZE"
ENV_HOOKS: Final = "FASTPROXY_HOOKS"
ENV_HOOK_FAILURE: Final = "FASTPROXY_HOOK_FAILURE"
ENV_NEXT_WRAPPER: Final = "FASTPROXY_NEXT_WRAPPER"

DEFAULT_PORT: Final = 9009
