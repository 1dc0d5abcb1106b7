/* A TCP sink for bench_ports: listen on the port given, and for each
 * connection read everything into a 1 MiB buffer until EOF, then close.
 * busybox nc reads 4 KiB at a time and would be what is measured; this
 * reads as fast as the kernel delivers. Built statically by bench_ports
 * and bind-mounted into the busybox container. */
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[1 << 20];

int main(int argc, char **argv)
{
    int one = 1, port = argc > 1 ? atoi(argv[1]) : 5000;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 16) < 0)
        return 1;
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        while (read(c, buf, sizeof buf) > 0)
            ;
        close(c);
    }
}
