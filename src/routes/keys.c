#include "mb_http.h"

const mb_route mb_routes_keys[] = {
    {NULL, NULL, NULL, 0},
};
