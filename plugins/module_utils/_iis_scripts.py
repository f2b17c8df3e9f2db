# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PowerShell the IIS modules run, as constants.

Each script starts with a header line naming it and its version, takes one
argument (the base64 UTF-8 JSON input document) and prints one base64 UTF-8
JSON result between the markers of ``_winrm``. No value is ever formatted
into these strings. Target: Windows PowerShell 5.1 with WebAdministration.

``SITE_SWAP`` runs primitive steps planned by ``_iis`` (query, then apply an
ordered list of actions); ``PACKAGE`` downloads, verifies and unpacks a
release. ``tests/doubles/iis_sim.py`` implements the same contract.
"""

from __future__ import annotations

SITE_SWAP_HEADER = '# immune.canary:iis_site_swap/1'
PACKAGE_HEADER = '# immune.canary:iis_package/1'

_COMMON = r"""param([string]$InputB64)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

function Write-Result {
    param($Result)
    $json = ConvertTo-Json -InputObject $Result -Depth 10 -Compress
    $b64 = [System.Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($json))
    Write-Output -InputObject ('<<immune.canary:result>>' + $b64 + '<</immune.canary:result>>')
}

$doc = ConvertFrom-Json -InputObject ([System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($InputB64)))
"""

SITE_SWAP = SITE_SWAP_HEADER + '\n' + _COMMON + r"""
Import-Module -Name WebAdministration

function Split-BindingInformation {
    param([string]$Information)
    $last = $Information.LastIndexOf(':')
    $middle = $Information.LastIndexOf(':', $last - 1)
    return @{
        ip = $Information.Substring(0, $middle)
        port = [int]$Information.Substring($middle + 1, $last - $middle - 1)
        host_header = $Information.Substring($last + 1)
    }
}

function Get-PoolState {
    param([string]$Name)
    if (-not $Name) { return '' }
    if (-not (Test-Path -LiteralPath ('IIS:\AppPools\' + $Name))) { return 'Missing' }
    return [string](Get-WebAppPoolState -Name $Name).Value
}

function Get-SiteState {
    param([string]$Name)
    return [string](Get-WebsiteState -Name $Name).Value
}

function Get-Inventory {
    $sites = @()
    foreach ($site in @(Get-ChildItem -LiteralPath 'IIS:\Sites')) {
        $bindings = @()
        foreach ($binding in @($site.bindings.Collection)) {
            $parts = Split-BindingInformation -Information ([string]$binding.bindingInformation)
            $hash = [string]$binding.certificateHash
            $bindings += [ordered]@{
                protocol = [string]$binding.protocol
                ip = $parts.ip
                port = $parts.port
                host_header = $parts.host_header
                certificate_thumbprint = $hash.ToUpperInvariant()
                certificate_store = [string]$binding.certificateStoreName
                sni = (([int]$binding.sslFlags -band 1) -eq 1)
            }
        }
        $pool = [string]$site.applicationPool
        $sites += [ordered]@{
            name = [string]$site.name
            id = [int]$site.id
            state = Get-SiteState -Name $site.name
            app_pool = $pool
            app_pool_state = Get-PoolState -Name $pool
            physical_path = [string]$site.physicalPath
            preload_enabled = [bool]$site.applicationDefaults.preloadEnabled
            auto_start = [bool]$site.serverAutoStart
            bindings = $bindings
        }
    }
    $pools = @()
    foreach ($pool in @(Get-ChildItem -LiteralPath 'IIS:\AppPools')) {
        $pools += [ordered]@{
            name = [string]$pool.name
            state = [string]$pool.state
            managed_runtime = [string]$pool.managedRuntimeVersion
            pipeline_mode = [string]$pool.managedPipelineMode
            identity = [string]$pool.processModel.identityType
            start_mode = [string]$pool.startMode
            idle_timeout = [int]([TimeSpan]$pool.processModel.idleTimeout).TotalMinutes
        }
    }
    return [ordered]@{ sites = $sites; pools = $pools }
}

function Wait-State {
    param([string]$Kind, [string]$Name, [string]$Want, [datetime]$Deadline)
    $delay = 100
    while ($true) {
        if ($Kind -eq 'site') { $now = Get-SiteState -Name $Name } else { $now = Get-PoolState -Name $Name }
        if ($now -eq $Want) { return }
        if ((Get-Date) -gt $Deadline) {
            throw ('timed out waiting for ' + $Kind + ' ' + $Name + ' to be ' + $Want + '; last state: ' + $now)
        }
        Start-Sleep -Milliseconds $delay
        $delay = [Math]::Min($delay * 2, 2000)
    }
}

function Set-PoolSettings {
    param($Action)
    $path = 'IIS:\AppPools\' + $Action.name
    Set-ItemProperty -LiteralPath $path -Name managedRuntimeVersion -Value ([string]$Action.managed_runtime)
    Set-ItemProperty -LiteralPath $path -Name managedPipelineMode -Value ([string]$Action.pipeline_mode)
    Set-ItemProperty -LiteralPath $path -Name processModel.identityType -Value ([string]$Action.identity)
    Set-ItemProperty -LiteralPath $path -Name startMode -Value ([string]$Action.start_mode)
    Set-ItemProperty -LiteralPath $path -Name processModel.idleTimeout -Value ([TimeSpan]::FromMinutes([int]$Action.idle_timeout))
}

function Set-SiteBindings {
    param($Action)
    $path = 'IIS:\Sites\' + $Action.name
    $collection = @()
    foreach ($b in @($Action.bindings)) {
        $flags = 0
        if ($b.sni) { $flags = 1 }
        $information = [string]$b.ip + ':' + [string]$b.port + ':' + [string]$b.host_header
        $collection += @{ protocol = [string]$b.protocol; bindingInformation = $information; sslFlags = $flags }
    }
    Set-ItemProperty -LiteralPath $path -Name bindings -Value $collection
    foreach ($b in @($Action.bindings)) {
        if ($b.protocol -eq 'https' -and $b.certificate_thumbprint) {
            $binding = Get-WebBinding -Name $Action.name -Protocol https -IPAddress $b.ip -Port $b.port -HostHeader $b.host_header
            $binding.AddSslCertificate([string]$b.certificate_thumbprint, [string]$b.certificate_store)
        }
    }
}

function Find-BindingHolder {
    param([string]$Name)
    $inventory = Get-Inventory
    $mine = @($inventory.sites | Where-Object -FilterScript { $_.name -eq $Name })
    foreach ($other in @($inventory.sites | Where-Object -FilterScript { $_.name -ne $Name -and $_.state -eq 'Started' })) {
        foreach ($a in @($mine[0].bindings)) {
            foreach ($b in @($other.bindings)) {
                $sameIp = ($a.ip -eq $b.ip) -or ($a.ip -eq '*') -or ($b.ip -eq '*')
                if ($sameIp -and $a.port -eq $b.port -and $a.host_header -eq $b.host_header) { return $other.name }
            }
        }
    }
    return ''
}

function Invoke-Action {
    param($Action, [datetime]$Deadline)
    $name = [string]$Action.name
    switch ([string]$Action.op) {
        'create_pool' {
            New-WebAppPool -Name $name | Out-Null
            Set-PoolSettings -Action $Action
        }
        'set_pool' { Set-PoolSettings -Action $Action }
        'create_site' {
            $first = @($Action.bindings)[0]
            $id = 1
            foreach ($site in @(Get-ChildItem -LiteralPath 'IIS:\Sites')) { if ([int]$site.id -ge $id) { $id = [int]$site.id + 1 } }
            $sitePath = [string]$Action.physical_path
            $pool = [string]$Action.app_pool
            $ip = [string]$first.ip
            $port = [int]$first.port
            $hostHeader = [string]$first.host_header
            try {
                New-Website -Name $name -Id $id -PhysicalPath $sitePath -ApplicationPool $pool -IPAddress $ip -Port $port -HostHeader $hostHeader | Out-Null
            }
            catch {
                # New-Website tries to start the site; a held binding only stops that start.
                if (-not (Test-Path -LiteralPath ('IIS:\Sites\' + $name))) { throw }
            }
            Set-ItemProperty -LiteralPath ('IIS:\Sites\' + $name) -Name serverAutoStart -Value $false
            if ((Get-SiteState -Name $name) -ne 'Stopped') { Stop-Website -Name $name }
            Set-ItemProperty -LiteralPath ('IIS:\Sites\' + $name) -Name applicationDefaults.preloadEnabled -Value ([bool]$Action.preload_enabled)
            Set-SiteBindings -Action $Action
        }
        'set_site' {
            $path = 'IIS:\Sites\' + $name
            Set-ItemProperty -LiteralPath $path -Name physicalPath -Value ([string]$Action.physical_path)
            Set-ItemProperty -LiteralPath $path -Name applicationPool -Value ([string]$Action.app_pool)
            Set-ItemProperty -LiteralPath $path -Name applicationDefaults.preloadEnabled -Value ([bool]$Action.preload_enabled)
        }
        'set_bindings' { Set-SiteBindings -Action $Action }
        'stop_site' {
            Set-ItemProperty -LiteralPath ('IIS:\Sites\' + $name) -Name serverAutoStart -Value $false
            if ((Get-SiteState -Name $name) -ne 'Stopped') { Stop-Website -Name $name }
            Wait-State -Kind site -Name $name -Want Stopped -Deadline $Deadline
        }
        'stop_pool' {
            if ((Get-PoolState -Name $name) -ne 'Stopped') { Stop-WebAppPool -Name $name }
            Wait-State -Kind pool -Name $name -Want Stopped -Deadline $Deadline
        }
        'start_pool' {
            if ((Get-PoolState -Name $name) -ne 'Started') { Start-WebAppPool -Name $name }
            Wait-State -Kind pool -Name $name -Want Started -Deadline $Deadline
        }
        'start_site' {
            Set-ItemProperty -LiteralPath ('IIS:\Sites\' + $name) -Name serverAutoStart -Value $true
            try {
                Start-Website -Name $name
            }
            catch {
                if ($_.Exception.HResult -eq -2147024713 -or [string]$_.Exception.Message -match '800700B7') {
                    $holder = Find-BindingHolder -Name $name
                    throw [System.InvalidOperationException]::new('BINDING_CONFLICT:' + $holder)
                }
                throw
            }
            Wait-State -Kind site -Name $name -Want Started -Deadline $Deadline
        }
        'remove_site' { Remove-Website -Name $name }
        'remove_pool' { Remove-WebAppPool -Name $name }
        'remove_content' {
            if (Test-Path -LiteralPath ([string]$Action.path)) { Remove-Item -LiteralPath ([string]$Action.path) -Recurse -Force }
        }
        default { throw ('unknown action ' + [string]$Action.op) }
    }
}

$result = [ordered]@{ failed = $false; msg = ''; applied = @(); conflict_site = ''; inventory = $null }
try {
    if ($doc.operation -eq 'apply') {
        $deadline = (Get-Date).AddSeconds([double]$doc.wait_timeout)
        foreach ($action in @($doc.actions)) {
            Invoke-Action -Action $action -Deadline $deadline
            $result.applied += [string]$action.op + ' ' + [string]$action.name
        }
    }
}
catch {
    $result.failed = $true
    $text = [string]$_.Exception.Message
    if ($text.StartsWith('BINDING_CONFLICT:')) {
        $result.conflict_site = $text.Substring(17)
        $text = 'a binding is held by another site (0x800700B7)'
    }
    $result.msg = $text
}
try {
    $result.inventory = Get-Inventory
}
catch {
    $result.failed = $true
    $result.msg = ($result.msg + ' ' + [string]$_.Exception.Message).Trim()
}
Write-Result -Result $result
"""

PACKAGE = PACKAGE_HEADER + '\n' + _COMMON + r"""
$dest = [string]$doc.dest
$marker = Join-Path -Path $dest -ChildPath '.immune-canary-package.json'
$result = [ordered]@{ failed = $false; msg = ''; changed = $false; dest = $dest; checksum = ''; size = $null }

function Read-Marker {
    if (-not (Test-Path -LiteralPath $marker)) { return $null }
    try { return ConvertFrom-Json -InputObject (Get-Content -LiteralPath $marker -Raw -Encoding UTF8) } catch { return $null }
}

try {
    $current = Read-Marker
    if ($doc.state -eq 'absent') {
        if (Test-Path -LiteralPath $dest) {
            $result.changed = $true
            if (-not $doc.check_mode) { Remove-Item -LiteralPath $dest -Recurse -Force }
        }
    }
    elseif ($current -ne $null -and [string]$current.checksum -eq [string]$doc.checksum) {
        $result.checksum = [string]$current.checksum
        $result.size = [long]$current.size
    }
    elseif ($doc.check_mode) {
        $result.changed = $true
        $result.checksum = [string]$doc.checksum
    }
    else {
        $parent = Split-Path -Path $dest -Parent
        $leaf = Split-Path -Path $dest -Leaf
        if (-not (Test-Path -LiteralPath $parent)) { New-Item -Path $parent -ItemType Directory -Force | Out-Null }
        $token = [System.Guid]::NewGuid().ToString('N')
        $download = Join-Path -Path $parent -ChildPath ('.' + $leaf + '.' + $token + '.zip')
        $stage = Join-Path -Path $parent -ChildPath ('.' + $leaf + '.' + $token + '.new')
        $retired = Join-Path -Path $parent -ChildPath ('.' + $leaf + '.' + $token + '.old')
        try {
            [System.Net.ServicePointManager]::SecurityProtocol = [System.Net.SecurityProtocolType]::Tls12
            if (-not $doc.validate_certs) {
                [System.Net.ServicePointManager]::ServerCertificateValidationCallback = { $true }
            }
            $headers = @{}
            foreach ($property in @($doc.headers.PSObject.Properties)) { $headers[$property.Name] = [string]$property.Value }
            Invoke-WebRequest -Uri ([string]$doc.url) -OutFile $download -Headers $headers -TimeoutSec ([int]$doc.timeout) -UseBasicParsing
            $actual = 'sha256:' + (Get-FileHash -LiteralPath $download -Algorithm SHA256).Hash.ToLowerInvariant()
            if ($actual -ne [string]$doc.checksum) {
                throw ('checksum mismatch: expected ' + [string]$doc.checksum + ', downloaded file has ' + $actual)
            }
            $size = (Get-Item -LiteralPath $download).Length
            Expand-Archive -LiteralPath $download -DestinationPath $stage
            $record = ConvertTo-Json -InputObject ([ordered]@{ checksum = $actual; size = $size; url_host = ([System.Uri][string]$doc.url).Host }) -Compress
            [System.IO.File]::WriteAllText((Join-Path -Path $stage -ChildPath '.immune-canary-package.json'), $record)
            if (Test-Path -LiteralPath $dest) { Move-Item -LiteralPath $dest -Destination $retired }
            Move-Item -LiteralPath $stage -Destination $dest
            if (Test-Path -LiteralPath $retired) { Remove-Item -LiteralPath $retired -Recurse -Force }
            $result.changed = $true
            $result.checksum = $actual
            $result.size = $size
        }
        finally {
            foreach ($leftover in @($download, $stage)) {
                if (Test-Path -LiteralPath $leftover) { Remove-Item -LiteralPath $leftover -Recurse -Force }
            }
        }
    }
}
catch {
    $result.failed = $true
    $result.msg = [string]$_.Exception.Message
}
Write-Result -Result $result
"""

SCRIPTS = {
    'iis_site_swap': SITE_SWAP,
    'iis_package': PACKAGE,
}
