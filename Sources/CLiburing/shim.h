/* shim.h -- the one header of the CLiburing system-library target. */
#include <liburing.h>
