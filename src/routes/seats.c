#include "mb_http.h"

const mb_route mb_routes_seats[] = {
    {NULL, NULL, NULL, 0},
};
