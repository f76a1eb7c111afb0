"""Request bodies larger than MAX_REQUEST_BODY_BYTES answer 413 before they are read."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework.exceptions import APIException


class RequestBodyTooLarge(APIException, RequestDataTooBig):
    """Raised when a body without a usable Content-Length grows past the limit.

    DRF answers it 413; a plain Django view answers 400 (a SuspiciousOperation).
    """

    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class _CappedStream:
    """A body stream that refuses to give more than ``limit`` bytes in total."""

    def __init__(self, stream, limit: int):
        self.stream = stream
        self.remaining = limit

    def read(self, size: int = -1) -> bytes:
        wanted = self.remaining + 1 if size is None or size < 0 else size
        data = self.stream.read(min(wanted, self.remaining + 1))
        self.remaining -= len(data)
        if self.remaining < 0:
            raise RequestBodyTooLarge()
        return data

    def readline(self, size: int = -1) -> bytes:
        limit = self.remaining + 1 if size is None or size < 0 else size
        data = self.stream.readline(min(limit, self.remaining + 1))
        self.remaining -= len(data)
        if self.remaining < 0:
            raise RequestBodyTooLarge()
        return data

    def __iter__(self):
        while line := self.readline():
            yield line

    def close(self) -> None:
        self.stream.close()


def _too_large(limit: int) -> JsonResponse:
    return JsonResponse(
        {"detail": f"The request body is larger than {limit} bytes."}, status=413
    )


class RequestBodyLimitMiddleware:
    """Refuse a declared Content-Length over the limit; cap a body of unknown length.

    Runs before anything reads the body (DRF's parsers bypass Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE), so a large body is never read into memory.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.MAX_REQUEST_BODY_BYTES
        declared = request.META.get("CONTENT_LENGTH") or ""
        if declared.strip():
            try:
                length = int(declared)
            except ValueError:
                return JsonResponse({"detail": "Malformed Content-Length."}, status=400)
            if length > limit:
                return _too_large(limit)
        elif getattr(request, "_stream", None) is not None:
            # No length given (a chunked body through ASGI): stop reading at the limit.
            request._stream = _CappedStream(request._stream, limit)
        return self.get_response(request)
