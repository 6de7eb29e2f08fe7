// The CPU scans' fork-join, sized by who shows up.
//
// A parallel region ends at a barrier that waits for every thread of the team, including one the
// OS has descheduled because its core is busy with other work (a DataLoader worker, another job):
// with two threads and one shared core, the two-thread scan then took longer than the one-thread
// scan.  Dynamic scheduling already lets the prompt threads take every tile; what remains is the
// wait for a thread that arrives after the work is done.  So each region records when its threads
// arrived; a thread that arrived after half the region's time did less than its share and will
// arrive late again while its core stays busy, and the next regions run without it.  Every
// kProbeEvery calls the full team runs again, so the scan gets its threads back when the core is
// free.  Tiles are independent and each is computed by one thread, so the team size never
// changes a result bit.  The full team is omp_get_max_threads(): the thread count of the process's
// one OpenMP runtime (torch's; torch.set_num_threads sets it).
#pragma once

#include <omp.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace exodus {

class TeamSizer {
 public:
    static constexpr int kMaxTeam = 256;  // threads beyond it are counted as prompt
    static constexpr uint32_t kProbeEvery = 16;

    // Threads for the next region out of max_threads.
    int choose(int max_threads) {
        int team = team_.load(std::memory_order_relaxed);
        if (team <= 0 || team > max_threads) return max_threads;
        if (team < max_threads && calls_.fetch_add(1, std::memory_order_relaxed) % kProbeEvery == kProbeEvery - 1)
            return max_threads;
        return team;
    }

    // After a region of `team` threads of which `late` arrived after half its time.
    void report(int team, int late) {
        const int prompt = team - late > 1 ? team - late : 1;
        team_.store(prompt, std::memory_order_relaxed);
    }

    // The team the next non-probe region gets (0: the full team), for build_info and tests.
    int team() const { return team_.load(std::memory_order_relaxed); }

 private:
    std::atomic<int> team_{0};
    std::atomic<uint32_t> calls_{0};
};

// One sizer per kind of scan (their sizes and costs differ); shared by the ISA copies.
inline TeamSizer lif_forward_team, lif_backward_team, leaky_forward_team, leaky_backward_team;

// body(b, kt, slot) for every batch row b < B and tile kt < ntiles of its row (../src/cpu/row_tiles.inc),
// tiles handed out one at a time to a team that `sizer` sizes; slot < omp_get_max_threads() is the running thread's index
// in the team (0 without one), for per-thread scratch.
template <typename Body>
void parallel_tiles(TeamSizer& sizer, int64_t B, int64_t ntiles, const Body& body) {
    const int max_threads = omp_get_max_threads();
    const int team = max_threads > 1 && B * ntiles > 1 ? sizer.choose(max_threads) : 1;
    if (team <= 1) {
        for (int64_t b = 0; b < B; ++b)
            for (int64_t kt = 0; kt < ntiles; ++kt) body(b, kt, 0);
        return;
    }
    using Clock = std::chrono::steady_clock;
    const Clock::time_point start = Clock::now();
    int64_t arrival_ns[TeamSizer::kMaxTeam] = {};
#pragma omp parallel num_threads(team)
    {
        const int id = omp_get_thread_num();
        if (id < TeamSizer::kMaxTeam)
            arrival_ns[id] = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
#pragma omp for collapse(2) schedule(dynamic, 1) nowait
        for (int64_t b = 0; b < B; ++b)
            for (int64_t kt = 0; kt < ntiles; ++kt) body(b, kt, id);
    }
    const int64_t total_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
    int late = 0;
    for (int id = 0; id < team && id < TeamSizer::kMaxTeam; ++id) late += 2 * arrival_ns[id] > total_ns;
    sizer.report(team, late);
}

}  // namespace exodus
