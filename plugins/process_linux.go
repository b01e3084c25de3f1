package plugins

import (
	"os/exec"
	"syscall"
)

// dieWithProxy has the kernel kill the plugin if the proxy dies without
// stopping it (SIGKILL, a crash), so that no plugin outlives it. The
// signal follows the thread that started the plugin: should that thread
// ever end, the plugin dies and the supervisor starts it again.
func dieWithProxy(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
