/* version: the release and build identifiers printed by -version and /health.
 * DAZ_BUILD is set by the Makefile from git. Uses nothing. */
#ifndef DAZ_VERSION_H
#define DAZ_VERSION_H

#define DAZ_VERSION "0.1.0"
#ifndef DAZ_BUILD
#define DAZ_BUILD "unknown"
#endif

#endif
