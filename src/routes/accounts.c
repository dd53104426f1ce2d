#include "mb_http.h"

const mb_route mb_routes_accounts[] = {
    {NULL, NULL, NULL, 0},
};
