# The interface of the message-level codec (pyx/protocol.pyx): what other extensions cimport with
# ``from multigres._cy.protocol cimport ...``.
#
# Three kinds of functions, named for direction:
# - ``write_<message>(WriteBuffer buf, ...)`` (cpdef) appends one message to a WriteBuffer, so a
#   read event is answered with one ``transport.write``. Python code calls them too; its
#   ``build_<message>(...)`` twins (in the .pyx only) return the message as ``bytes``.
# - ``parse_<message>_ptr(const char *data, Py_ssize_t size)`` (cdef) decodes a payload (what
#   follows the type byte and length) in place, without a copy; ``payload_ptr(buf, &size)``
#   points at the current ReadBuffer message's unread payload. Python code calls
#   ``parse_<message>(payload)``.
# - ``write_renamed_*_ptr`` / ``write_notification_with_pid_ptr`` (cdef) re-emit a received
#   message with one field replaced, copying the untouched tail once.
#
# Errors: a malformed payload raises ProtocolError (SQLSTATE 08P01); functions returning a C
# value declare how the exception crosses them (``except -1``), those returning objects use NULL.

cimport cython
from libc.stdint cimport int16_t, int32_t, int64_t, uint32_t

from multigres._cy.buffer cimport ReadBuffer, WriteBuffer


cdef enum:
    # The int32 at the start of a startup-phase packet's payload: a protocol version
    # (major << 16 | minor) or a request code.
    PG_PROTOCOL_3_0 = 196608
    PG_CANCEL_REQUEST_CODE = 80877102
    PG_SSL_REQUEST_CODE = 80877103
    PG_GSSENC_REQUEST_CODE = 80877104

    # What parse_startup() found (StartupPacket.kind).
    PG_STARTUP_MESSAGE = 0
    PG_STARTUP_SSL_REQUEST = 1
    PG_STARTUP_GSSENC_REQUEST = 2
    PG_STARTUP_CANCEL_REQUEST = 3
    # A protocol version other than 3.x, or an unknown request code.
    PG_STARTUP_UNSUPPORTED = 4

    # Authentication request codes (the int32 that starts an 'R' message's payload).
    PG_AUTH_OK = 0
    PG_AUTH_CLEARTEXT_PASSWORD = 3
    PG_AUTH_MD5_PASSWORD = 5
    PG_AUTH_SASL = 10
    PG_AUTH_SASL_CONTINUE = 11
    PG_AUTH_SASL_FINAL = 12


@cython.final
cdef class StartupPacket:
    cdef readonly int kind
    cdef readonly int32_t code
    cdef readonly int major
    cdef readonly int minor
    cdef readonly dict params
    cdef readonly dict options
    cdef readonly int32_t pid
    cdef readonly int32_t key


# The current ReadBuffer message's unread payload, in place (valid until the next take/feed).
cdef inline const char *payload_ptr(ReadBuffer buf, Py_ssize_t *size) except NULL:
    size[0] = buf.remaining()
    return buf.read_ptr(size[0])


# -- server role: what a pooler or gateway sends to its clients ----------------------------------

cpdef write_auth(WriteBuffer buf, int32_t code, object data=*)
cpdef write_auth_sasl(WriteBuffer buf, object mechanisms)
cpdef write_parameter_status(WriteBuffer buf, object name, object value)
cpdef write_backend_key_data(WriteBuffer buf, int32_t pid, int32_t key)
cpdef write_ready_for_query(WriteBuffer buf, int status)
cpdef write_error_response(WriteBuffer buf, object fields)
cpdef write_notice_response(WriteBuffer buf, object fields)
cpdef write_row_description(WriteBuffer buf, object columns)
cpdef write_data_row(WriteBuffer buf, object values)
cpdef write_command_complete(WriteBuffer buf, object tag)
cpdef write_parameter_description(WriteBuffer buf, object type_oids)
cpdef write_notification_response(WriteBuffer buf, int32_t pid, object channel, object payload)
cpdef write_negotiate_protocol_version(WriteBuffer buf, int32_t newest_minor, object options)
cpdef write_copy_response(WriteBuffer buf, int msg_type, int overall_format, object column_formats)

# -- both roles -------------------------------------------------------------------------------

# A message with an empty payload: Sync, Flush, Terminate, ParseComplete, BindComplete,
# CloseComplete, NoData, EmptyQueryResponse, PortalSuspended, CopyDone.
cpdef write_empty_message(WriteBuffer buf, int msg_type)
cpdef write_copy_data(WriteBuffer buf, object data)
cpdef write_copy_fail(WriteBuffer buf, object message)

# -- client role: what a pooler sends to Postgres --------------------------------------------

cpdef write_startup_message(WriteBuffer buf, object params, int minor=*)
cpdef write_ssl_request(WriteBuffer buf)
cpdef write_cancel_request(WriteBuffer buf, int32_t pid, int32_t key)
cpdef write_password_message(WriteBuffer buf, object password)
cpdef write_sasl_initial_response(WriteBuffer buf, object mechanism, object data)
cpdef write_sasl_response(WriteBuffer buf, object data)
cpdef write_query(WriteBuffer buf, object sql)
cpdef write_parse(WriteBuffer buf, object name, object sql, object param_oids=*)
cpdef write_bind(
    WriteBuffer buf,
    object portal,
    object statement,
    object param_formats,
    object params,
    object result_formats=*,
)
cpdef write_describe(WriteBuffer buf, int kind, object name)
cpdef write_execute(WriteBuffer buf, object portal, int32_t max_rows=*)
cpdef write_close(WriteBuffer buf, int kind, object name)

# -- parsers: payload in place -> Python values --------------------------------------------------

cdef StartupPacket parse_startup_ptr(const char *data, Py_ssize_t size)

# Messages from Postgres.
cdef tuple parse_authentication_ptr(const char *data, Py_ssize_t size)
cdef tuple parse_parameter_status_ptr(const char *data, Py_ssize_t size)
cdef tuple parse_backend_key_data_ptr(const char *data, Py_ssize_t size)
cdef int parse_ready_for_query_ptr(const char *data, Py_ssize_t size) except -1
cdef dict parse_error_response_ptr(const char *data, Py_ssize_t size)
cdef tuple parse_notification_response_ptr(const char *data, Py_ssize_t size)
cdef str parse_command_complete_ptr(const char *data, Py_ssize_t size)
cdef list parse_row_description_ptr(const char *data, Py_ssize_t size)
cdef list parse_data_row_ptr(const char *data, Py_ssize_t size)
cdef list parse_parameter_description_ptr(const char *data, Py_ssize_t size)
cdef tuple parse_negotiate_protocol_version_ptr(const char *data, Py_ssize_t size)
cdef tuple parse_copy_response_ptr(const char *data, Py_ssize_t size)

# Messages from clients.
cdef bytes parse_query_ptr(const char *data, Py_ssize_t size)
cdef tuple parse_parse_ptr(const char *data, Py_ssize_t size)
cdef tuple parse_bind_header_ptr(const char *data, Py_ssize_t size)
cdef tuple parse_bind_ptr(const char *data, Py_ssize_t size)
# msg_type is ord('D') or ord('C'), for error messages.
cdef tuple parse_describe_or_close_ptr(int msg_type, const char *data, Py_ssize_t size)
cdef tuple parse_execute_ptr(const char *data, Py_ssize_t size)
cdef bytes parse_password_message_ptr(const char *data, Py_ssize_t size)
cdef tuple parse_sasl_initial_response_ptr(const char *data, Py_ssize_t size)

# -- rewriting: re-emit a received message with one field replaced -----------------------------

# Each appends the whole new message (header included) to out; name is NUL-free.
cdef int write_renamed_parse_ptr(
    WriteBuffer out, const char *payload, Py_ssize_t size, const char *name, Py_ssize_t name_size
) except -1
cdef int write_renamed_bind_ptr(
    WriteBuffer out, const char *payload, Py_ssize_t size, const char *name, Py_ssize_t name_size
) except -1
cdef int write_renamed_describe_or_close_ptr(
    WriteBuffer out,
    int msg_type,
    const char *payload,
    Py_ssize_t size,
    const char *name,
    Py_ssize_t name_size,
) except -1
cdef int write_notification_with_pid_ptr(
    WriteBuffer out, const char *payload, Py_ssize_t size, int32_t pid
) except -1

# -- forwarding: runs of messages the pooler does not need to look at ----------------------------

# ReadBuffer.take_run_into() with a ready 256-entry table (stops[type] != 0: stop there).
cdef Py_ssize_t take_run_until(
    ReadBuffer buf, WriteBuffer out, const unsigned char *stops
) except -1

cpdef Py_ssize_t scan_backend_run(ReadBuffer buf, WriteBuffer out, bint tracking=*) except -1
cpdef Py_ssize_t scan_frontend_run(ReadBuffer buf, WriteBuffer out) except -1
