/* The connection front: one thread that accepts every connection and keeps it
 * in an epoll set ("parked": a descriptor and a few bytes, no thread) until
 * its first request head has arrived whole. Only then does the connection go
 * to libmicrohttpd, which gives it a thread of its own (handlers block in
 * libpq, so a thread per busy connection keeps a slow query from stalling
 * others). So idle connections and slow-header clients cost no thread and no
 * stack, whatever their number.
 *
 * HTTP_MAX_CONNECTIONS bounds the connections handed to libmicrohttpd, and the
 * front enforces it itself: a request that arrives while that many are being
 * served gets an immediate 503 problem and a close. libmicrohttpd 0.9.75's
 * own limit must never be reached: its refusal path returns with
 * cleanup_connection_mutex still locked, and every connection thread then
 * blocks on that mutex for good (the wedge of issue 19). Its limit is set far
 * above ours. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "front.h"

/* A request head longer than this goes to libmicrohttpd as it is, which
 * answers 431 for heads over its connection memory. */
#define PEEK_MAX (64 * 1024)
/* Descriptors kept for everything but parked connections: the database pool,
 * log files, libmicrohttpd's own, and a margin. */
#define FD_RESERVE 64

typedef struct parked {
    struct parked *prev, *next;
    int fd;
    bool lingering; /* answered 503, draining what the client still sends */
    size_t scanned; /* bytes of the head already searched for its end */
    double deadline;
    socklen_t addr_len;
    struct sockaddr_storage addr;
} parked;

static struct {
    struct MHD_Daemon *daemon;
    int listen_fd, epoll_fd, wake_fd, spare_fd;
    int cap;               /* HTTP_MAX_CONNECTIONS */
    long parked_max;       /* from RLIMIT_NOFILE */
    double head_timeout_s; /* from accept to a whole request head */
    parked head;           /* list sentinel, oldest first */
    long nparked;
    pthread_t thread;
    atomic_bool stopping;
} F;

static atomic_int active; /* connections libmicrohttpd serves now */

/* Connections served per client address, so that one client (a scraper, a
 * runaway integration) cannot take every thread: HTTP_MAX_CONNECTIONS_PER_CLIENT.
 * Added to by the front, taken from by libmicrohttpd's daemon thread. */
#define CLIENT_BUCKETS 4096
typedef struct client {
    struct client *next;
    unsigned char addr[16]; /* IPv6, or IPv4-mapped */
    int served;
} client;
static client *clients[CLIENT_BUCKETS];
static pthread_mutex_t clients_mu = PTHREAD_MUTEX_INITIALIZER;
static int per_client_cap;

static void addr_key(const struct sockaddr *sa, unsigned char out[16])
{
    memset(out, 0, 16);
    if (sa != NULL && sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else if (sa != NULL && sa->sa_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    }
}

static client **client_slot(const unsigned char key[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    client **pp = &clients[h % CLIENT_BUCKETS];
    while (*pp != NULL && memcmp((*pp)->addr, key, 16) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Counts one more served connection of sa unless it has per_client_cap. */
static bool client_take(const struct sockaddr *sa)
{
    unsigned char key[16];
    addr_key(sa, key);
    bool ok = false;
    pthread_mutex_lock(&clients_mu);
    client **pp = client_slot(key);
    if (*pp == NULL) {
        client *n = calloc(1, sizeof(*n));
        if (n != NULL) {
            memcpy(n->addr, key, 16);
            *pp = n;
        }
    }
    if (*pp != NULL && (*pp)->served < per_client_cap) {
        (*pp)->served++;
        ok = true;
    }
    pthread_mutex_unlock(&clients_mu);
    return ok;
}

static void client_give(const struct sockaddr *sa)
{
    unsigned char key[16];
    addr_key(sa, key);
    pthread_mutex_lock(&clients_mu);
    client **pp = client_slot(key);
    client *c = *pp;
    if (c != NULL && --c->served <= 0) {
        *pp = c->next;
        free(c);
    }
    pthread_mutex_unlock(&clients_mu);
}
static atomic_long refused;
static atomic_long timed_out;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The front counts a connection when it hands it over: libmicrohttpd takes
 * an added connection in on its daemon thread, later, so its own "started"
 * notice would let a burst pass the cap. It reports a connection closed (on
 * that thread) once it has joined the connection's thread, so the count
 * bounds threads. (A connection whose memory pool could not be allocated is
 * dropped with neither notice and stays counted: out of memory only.) */
void mb_front_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                     enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    (void)socket_context;
    if (toe != MHD_CONNECTION_NOTIFY_CLOSED)
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    client_give(ci != NULL ? ci->client_addr : NULL);
    atomic_fetch_sub(&active, 1);
}

void mb_front_stats(mb_front_stats_t *out)
{
    out->active = atomic_load(&active);
    out->parked = __atomic_load_n(&F.nparked, __ATOMIC_RELAXED);
    out->refused = atomic_load(&refused);
    out->timed_out = atomic_load(&timed_out);
}

static void unlink_parked(parked *p)
{
    p->prev->next = p->next;
    p->next->prev = p->prev;
    __atomic_store_n(&F.nparked, F.nparked - 1, __ATOMIC_RELAXED);
}

static void drop(parked *p)
{
    epoll_ctl(F.epoll_fd, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    unlink_parked(p);
    free(p);
}

/* The whole 503: small enough for any socket buffer, so one send. */
static void refuse(parked *p, const char *detail)
{
    static _Thread_local uint64_t seq;
    static _Thread_local uint32_t salt;
    if (salt == 0 && getrandom(&salt, sizeof(salt), 0) != (ssize_t)sizeof(salt))
        salt = (uint32_t)time(NULL) | 1u;
    seq++;
    char body[512];
    int bl = snprintf(body, sizeof(body),
                      "{\"type\":\"https://mpn-benefits.example/problems/unavailable\",\"title\":"
                      "\"Service unavailable\",\"status\":503,\"detail\":\"%s\",\"code\":"
                      "\"unavailable\"}",
                      detail);
    char msg[1024];
    int n =
        snprintf(msg, sizeof(msg),
                 "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
                 "Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n"
                 "X-Request-Id: %08x-0000-4000-8000-%012llx\r\n\r\n%s",
                 bl, salt, (unsigned long long)(seq & 0xffffffffffffull), body);
    /* The head was only peeked: read it now, so that closing does not reset
     * the connection before the client reads the answer. */
    char sink[4096];
    while (recv(p->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
        ;
    ssize_t w = send(p->fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w; /* a client that cannot take 500 bytes is closed all the same */
    shutdown(p->fd, SHUT_WR);
    atomic_fetch_add(&refused, 1);
    p->lingering = true;
    p->deadline = now_s() + 2.0;
}

/* Hands a connection whose request head is there to libmicrohttpd, or
 * refuses it when HTTP_MAX_CONNECTIONS are being served. */
static void hand_over(parked *p)
{
    if (atomic_load(&active) >= F.cap) {
        refuse(p, "This instance is serving as many connections as it may "
                  "(HTTP_MAX_CONNECTIONS); retry shortly.");
        return;
    }
    if (!client_take((const struct sockaddr *)&p->addr)) {
        refuse(p, "This client has as many connections served as it may "
                  "(HTTP_MAX_CONNECTIONS_PER_CLIENT); reuse them, or retry shortly.");
        return;
    }
    epoll_ctl(F.epoll_fd, EPOLL_CTL_DEL, p->fd, NULL);
    unlink_parked(p);
    /* Only this thread adds connections, so active cannot pass cap. MHD
     * closes fd itself when it refuses it. */
    atomic_fetch_add(&active, 1);
    if (MHD_add_connection(F.daemon, p->fd, (const struct sockaddr *)&p->addr, p->addr_len) !=
        MHD_YES) {
        client_give((const struct sockaddr *)&p->addr);
        atomic_fetch_sub(&active, 1);
    }
    free(p);
}

/* Has the request head arrived whole? Peeks, never consumes: the bytes stay
 * for libmicrohttpd. */
static void on_readable(parked *p, uint32_t events)
{
    static char buf[PEEK_MAX];
    if (p->lingering) {
        ssize_t n;
        while ((n = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
            ;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            drop(p);
        return;
    }
    ssize_t n = recv(p->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        drop(p); /* closed before sending a request */
        return;
    }
    if (n <= 0)
        return;
    size_t from = p->scanned > 3 ? p->scanned - 3 : 0;
    if (memmem(buf + from, (size_t)n - from, "\r\n\r\n", 4) != NULL || n >= PEEK_MAX) {
        hand_over(p);
        return;
    }
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        drop(p); /* the client stopped sending: this head will never be whole */
        return;
    }
    p->scanned = (size_t)n;
}

static void park(int fd, const struct sockaddr_storage *a, socklen_t al)
{
    parked *p = calloc(1, sizeof(*p));
    if (p == NULL || F.nparked >= F.parked_max) {
        free(p);
        close(fd); /* over every limit: a plain close is the cheap refusal */
        atomic_fetch_add(&refused, 1);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    p->fd = fd;
    p->addr = *a;
    p->addr_len = al;
    p->deadline = now_s() + F.head_timeout_s;
    /* Edge-triggered: a partial head stays unread in the socket, so a
     * level-triggered wait would wake again at once. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = p};
    if (epoll_ctl(F.epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        free(p);
        close(fd);
        return;
    }
    p->prev = F.head.prev;
    p->next = &F.head;
    F.head.prev->next = p;
    F.head.prev = p;
    __atomic_store_n(&F.nparked, F.nparked + 1, __ATOMIC_RELAXED);
    /* The head may have come with the connection (before the epoll add). */
    on_readable(p, 0);
}

static void accept_all(void)
{
    for (;;) {
        struct sockaddr_storage a;
        socklen_t al = sizeof(a);
        int fd = accept4(F.listen_fd, (struct sockaddr *)&a, &al, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            park(fd, &a, al);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if ((errno == EMFILE || errno == ENFILE) && F.spare_fd >= 0) {
            /* Out of descriptors: a connection left in the backlog would wake
             * this loop forever. Free the spare, take it and close it. */
            close(F.spare_fd);
            fd = accept4(F.listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                close(fd);
            atomic_fetch_add(&refused, 1);
            F.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            continue;
        }
        return; /* EAGAIN, or an error the next wake-up retries */
    }
}

static void expire(double now)
{
    for (parked *p = F.head.next, *next; p != &F.head; p = next) {
        next = p->next;
        if (p->deadline > now)
            continue;
        if (!p->lingering)
            atomic_fetch_add(&timed_out, 1);
        drop(p);
    }
}

static void *front_loop(void *arg)
{
    (void)arg;
    struct epoll_event evs[256];
    double next_sweep = now_s() + 1.0;
    while (!atomic_load(&F.stopping)) {
        int n = epoll_wait(F.epoll_fd, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &F.listen_fd)
                accept_all();
            else if (tag != &F.wake_fd)
                on_readable(tag, evs[i].events);
        }
        double now = now_s();
        if (now >= next_sweep) {
            expire(now);
            next_sweep = now + 1.0;
        }
    }
    while (F.head.next != &F.head)
        drop(F.head.next);
    return NULL;
}

int mb_front_start(struct MHD_Daemon *daemon, int listen_fd, int cap, int per_client,
                   unsigned head_timeout_s)
{
    per_client_cap = per_client;
    F.daemon = daemon;
    F.listen_fd = listen_fd;
    F.cap = cap;
    F.head_timeout_s = head_timeout_s;
    F.head.next = F.head.prev = &F.head;
    struct rlimit rl;
    long nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (long)rl.rlim_cur : 1024;
    F.parked_max = nofile - cap - FD_RESERVE;
    if (F.parked_max < 16)
        F.parked_max = 16;
    F.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    F.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    F.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (F.epoll_fd < 0 || F.wake_fd < 0)
        return -1;
    /* the listener is drained until EAGAIN at each wake-up */
    int fl = fcntl(listen_fd, F_GETFL);
    if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &F.listen_fd};
    struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &F.wake_fd};
    if (epoll_ctl(F.epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev) != 0 ||
        epoll_ctl(F.epoll_fd, EPOLL_CTL_ADD, F.wake_fd, &wev) != 0)
        return -1;
    if (pthread_create(&F.thread, NULL, front_loop, NULL) != 0)
        return -1;
    return 0;
}

void mb_front_stop(void)
{
    atomic_store(&F.stopping, true);
    uint64_t one = 1;
    ssize_t w = write(F.wake_fd, &one, sizeof(one));
    (void)w;
    pthread_join(F.thread, NULL);
    close(F.wake_fd);
    close(F.epoll_fd);
    if (F.spare_fd >= 0)
        close(F.spare_fd);
}
