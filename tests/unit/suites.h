#ifndef MCPAUTH_TEST_SUITES_H
#define MCPAUTH_TEST_SUITES_H
#include <check.h>
Suite *config_suite(void);
Suite *uri_suite(void);
Suite *util_suite(void);
Suite *http_suite(void);
Suite *metadata_suite(void);
Suite *jose_suite(void);
Suite *fetch_suite(void);
Suite *validate_suite(void);
Suite *shm_suite(void);
Suite *jsonrpc_suite(void);
Suite *store_suite(void);
Suite *cimd_suite(void);
Suite *keys_suite(void);
Suite *validate_remote_suite(void);
#endif
