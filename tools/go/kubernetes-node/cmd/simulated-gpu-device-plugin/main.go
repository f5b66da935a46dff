// Command simulated-gpu-device-plugin advertises GPUs that do not exist, through the kubelet's real
// device-plugin API, so that a local node without GPUs schedules and allocates nvidia.com/gpu as a
// GPU node does. It says so: the devices are named sim-gpu-N, and every container given one gets
// MLPLATFORM_SIMULATED_GPUS (the ids) instead of any device node. Containers run on CPU.
//
// It is the kubelet's own test stub (k8s.io/kubernetes/pkg/kubelet/cm/devicemanager/plugin/v1beta1),
// which serves the API, registers with the kubelet and registers again when the kubelet restarts.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	stub "k8s.io/kubernetes/pkg/kubelet/cm/devicemanager/plugin/v1beta1"
)

func main() {
	count := flag.Int("count", 1, "how many GPUs to advertise")
	resource := flag.String("resource", "nvidia.com/gpu", "the extended resource name")
	dir := flag.String("socket-dir", pluginapi.DevicePluginPath, "the kubelet's device-plugin directory")
	flag.Parse()
	logger := klog.Background()
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	devices := make([]*pluginapi.Device, *count)
	for i := range devices {
		devices[i] = &pluginapi.Device{ID: fmt.Sprintf("sim-gpu-%d", i), Health: pluginapi.Healthy}
	}
	socket := filepath.Join(*dir, "mlplatform-simulated-gpu.sock")
	plugin := stub.NewDevicePluginStub(logger, devices, socket, *resource, false, false)
	plugin.SetAllocFunc(func(r *pluginapi.AllocateRequest, _ map[string]*pluginapi.Device) (*pluginapi.AllocateResponse, error) {
		resp := &pluginapi.AllocateResponse{}
		for _, c := range r.ContainerRequests {
			resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
				Envs: map[string]string{"MLPLATFORM_SIMULATED_GPUS": strings.Join(c.DevicesIds, ",")},
			})
		}
		return resp, nil
	})
	if err := plugin.Start(ctx); err != nil {
		logger.Error(err, "could not serve the device-plugin API")
		os.Exit(1)
	}
	if err := plugin.Register(ctx, pluginapi.KubeletSocket, *resource, ""); err != nil {
		logger.Error(err, "could not register with the kubelet")
		os.Exit(1)
	}
	go plugin.Watch(ctx, pluginapi.KubeletSocket, *resource, "")
	logger.Info("advertising simulated GPUs", "resource", *resource, "count", *count)
	<-ctx.Done()
	_ = plugin.Stop(logger)
}
