/* heap.c -- the C heap's own figures for the leak checks of the Swift
 * tests (glibc's malloc.h, which Swift's Glibc module does not import). */
#include <malloc.h>

#include "CFdPeer.h"

size_t cfdpeer_heap_in_use(void) { return mallinfo2().uordblks; }

void cfdpeer_heap_trim(void) { malloc_trim(0); }
