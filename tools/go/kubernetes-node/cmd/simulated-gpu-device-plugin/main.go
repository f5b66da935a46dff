// Command simulated-gpu-device-plugin advertises GPUs that do not exist, through the kubelet's real
// device-plugin API, so that a local node without GPUs schedules and allocates GPUs as a GPU node
// does. It says so: every device id starts with "simulated-gpu-", and a container given devices
// gets MLPLATFORM_SIMULATED_GPUS (the GPUs' ids) instead of any device node. Containers run on CPU.
//
// Time-slicing is simulated the way NVIDIA's device plugin does it: each GPU is advertised as
// several devices "<gpu id>::<replica>", under nvidia.com/gpu or a renamed resource. The cluster
// manager (cluster/localcluster/gpuplugin.py) works out the ids and the name and passes them in
// --devices and --resource; this command serves them. A container given replicas sees the
// underlying GPUs in MLPLATFORM_SIMULATED_GPUS (each once, as NVIDIA_VISIBLE_DEVICES would name
// them) and the replicas in MLPLATFORM_SIMULATED_GPU_REPLICAS. With --fail-requests-greater-than-one
// a container asking for more than one replica is refused at allocation, as NVIDIA's plugin does.
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
	"slices"
	"strings"
	"syscall"

	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	stub "k8s.io/kubernetes/pkg/kubelet/cm/devicemanager/plugin/v1beta1"
)

// replicaSeparator splits a shared device id into the GPU's id and the replica's number.
const replicaSeparator = "::"

func main() {
	ids := flag.String("devices", "simulated-gpu-0", "the device ids to advertise, comma-separated (GPU::replica when shared)")
	resource := flag.String("resource", "nvidia.com/gpu", "the extended resource name")
	failAboveOne := flag.Bool("fail-requests-greater-than-one", false, "refuse a container asking for more than one shared device")
	dir := flag.String("socket-dir", pluginapi.DevicePluginPath, "the kubelet's device-plugin directory")
	flag.Parse()
	logger := klog.Background()
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	var devices []*pluginapi.Device
	for _, id := range strings.Split(*ids, ",") {
		if !strings.HasPrefix(id, "simulated-gpu-") {
			logger.Error(nil, "a simulated device's id must start with simulated-gpu-", "id", id)
			os.Exit(2)
		}
		devices = append(devices, &pluginapi.Device{ID: id, Health: pluginapi.Healthy})
	}
	socket := filepath.Join(*dir, "mlplatform-simulated-gpu.sock")
	plugin := stub.NewDevicePluginStub(logger, devices, socket, *resource, false, false)
	plugin.SetAllocFunc(func(r *pluginapi.AllocateRequest, _ map[string]*pluginapi.Device) (*pluginapi.AllocateResponse, error) {
		resp := &pluginapi.AllocateResponse{}
		for _, c := range r.ContainerRequests {
			var gpus []string
			shared := false
			for _, id := range c.DevicesIds {
				gpu, _, found := strings.Cut(id, replicaSeparator)
				shared = shared || found
				if !slices.Contains(gpus, gpu) {
					gpus = append(gpus, gpu)
				}
			}
			if *failAboveOne && shared && len(c.DevicesIds) > 1 {
				return nil, fmt.Errorf("request for %d %s is too large: at most 1 shared GPU per container (failRequestsGreaterThanOne)",
					len(c.DevicesIds), *resource)
			}
			envs := map[string]string{"MLPLATFORM_SIMULATED_GPUS": strings.Join(gpus, ",")}
			if shared {
				envs["MLPLATFORM_SIMULATED_GPU_REPLICAS"] = strings.Join(c.DevicesIds, ",")
			}
			resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{Envs: envs})
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
	logger.Info("advertising simulated GPUs", "resource", *resource, "devices", len(devices))
	<-ctx.Done()
	_ = plugin.Stop(logger)
}
