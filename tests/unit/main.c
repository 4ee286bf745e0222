/* Runs every unit suite; exit status is the number of failures (capped). */
#include <stdlib.h>
#include <curl/curl.h>
#include "suites.h"

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    SRunner *sr = srunner_create(config_suite());
    srunner_add_suite(sr, uri_suite());
    srunner_add_suite(sr, util_suite());
    srunner_add_suite(sr, http_suite());
    srunner_add_suite(sr, metadata_suite());
    srunner_add_suite(sr, jose_suite());
    srunner_add_suite(sr, fetch_suite());
    srunner_add_suite(sr, validate_suite());
    srunner_add_suite(sr, shm_suite());
    srunner_add_suite(sr, metrics_suite());
    srunner_add_suite(sr, revoked_suite());
    srunner_add_suite(sr, jsonrpc_suite());
    srunner_add_suite(sr, store_suite());
    srunner_add_suite(sr, cimd_suite());
    srunner_add_suite(sr, keys_suite());
    srunner_add_suite(sr, validate_remote_suite());
    srunner_add_suite(sr, as_suite());
    srunner_add_suite(sr, proxy_suite());
    srunner_add_suite(sr, shared_cache_suite());
    srunner_add_suite(sr, clock_suite());
    srunner_add_suite(sr, state_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
