#include "mb_http.h"

const mb_route mb_routes_activation[] = {
    {NULL, NULL, NULL, 0},
};
