// SPDX-License-Identifier: MIT
// gcp/callbacks.h compiled as strict ISO C11 (-std=c11 -pedantic, see the Makefile):
// applications in C include it too. The C++ tests call this to show it links and works.
#include "gcp/callbacks.h"

const char *callbacks_c11_event_name(int event);

const char *callbacks_c11_event_name(int event) { return gcp_event_name((enum gcp_event)event); }
